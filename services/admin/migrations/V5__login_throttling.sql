-- Lockout that nobody outside can turn against the tenant (DOMAIN §8 keeps ≥ 2 administrators):
-- locks expire (locked_until), failures are also counted per source with growing delays,
-- and a source the account logged in from recently is not held by the account's lock.
ALTER TABLE admin.users ADD COLUMN locked_until timestamptz NULL;
-- Locks taken before this change were until an administrator unlocks: they stay so.
UPDATE admin.users SET locked_until = '9999-12-31 00:00:00+00' WHERE locked_at IS NOT NULL;

-- One row per account and client address that tried it.
CREATE TABLE admin.login_sources (
    tenant_id       text        NOT NULL,
    user_id         uuid        NOT NULL REFERENCES admin.users (id) ON DELETE CASCADE,
    source          text        NOT NULL,
    -- Failures from this source since its last success.
    failures        int         NOT NULL DEFAULT 0 CHECK (failures >= 0),
    -- The source may not try again before this instant.
    delayed_until   timestamptz NULL,
    last_failure_at timestamptz NULL,
    last_success_at timestamptz NULL,
    PRIMARY KEY (tenant_id, user_id, source)
);

-- Who locked and unlocked accounts, and why: the trail an operator's unlock leaves.
CREATE TABLE admin.account_events (
    tenant_id text        NOT NULL,
    id        uuid        PRIMARY KEY,
    user_id   uuid        NOT NULL REFERENCES admin.users (id) ON DELETE CASCADE,
    -- locked | unlocked
    event     text        NOT NULL CHECK (event IN ('locked', 'unlocked')),
    -- A user id (tenant administrator), "operator:<name>" (platform operator CLI) or
    -- "login-failures" (the lock itself).
    actor     text        NOT NULL,
    reason    text        NOT NULL DEFAULT '',
    at        timestamptz NOT NULL
);
CREATE INDEX account_events_user ON admin.account_events (tenant_id, user_id, at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['login_sources', 'account_events']
    LOOP
        EXECUTE format('ALTER TABLE admin.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE admin.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_wall ON admin.%I
            USING (tenant_id = current_setting('chukan.tenant', true))
            WITH CHECK (tenant_id = current_setting('chukan.tenant', true))$p$, t);
    END LOOP;
END $$;
