-- admin: the platform's tenant registry, staff users and system clients.

-- 情報保有機関 (organisations) = tenants. A platform-wide registry read before any tenant is
-- known (login, routing), so it carries no row-level security; it holds no personal data.
CREATE TABLE admin.tenants (
    org_code     text PRIMARY KEY CHECK (org_code ~ '^[0-9]{16}$'),
    name         text NOT NULL CHECK (name <> ''),
    kind         text NOT NULL CHECK (kind IN ('municipality', 'prefecture', 'union')),
    population   bigint NOT NULL CHECK (population > 0),
    home_region  text NOT NULL CHECK (home_region IN ('east', 'west')),
    -- 一括登録グループ (upload group) A–H; NULL until assigned.
    upload_group char(1) NULL CHECK (upload_group IN ('A', 'B', 'C', 'D', 'E', 'F', 'G', 'H')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Staff (職員) of a tenant. valid_to is the last valid day (inclusive), Japan date.
CREATE TABLE admin.users (
    tenant_id     text NOT NULL REFERENCES admin.tenants (org_code),
    id            uuid PRIMARY KEY,
    login_id      text NOT NULL CHECK (length(login_id) BETWEEN 1 AND 64),
    display_name  text NOT NULL CHECK (display_name <> ''),
    -- argon2id PHC string; never returned by the API.
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    roles         text[] NOT NULL
                  CHECK (cardinality(roles) > 0
                         AND roles <@ ARRAY['system_admin', 'business_staff']::text[]),
    department    text NULL,
    valid_from    date NOT NULL,
    valid_to      date NULL CHECK (valid_to IS NULL OR valid_to >= valid_from),
    failed_logins int NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_at     timestamptz NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, login_id)
);

ALTER TABLE admin.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin.users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON admin.users
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));

-- Machine callers (業務システム) of a tenant, authenticated by client credentials.
-- client_id = '<org code>.<random hex>' so the tenant is known before the RLS-scoped lookup.
CREATE TABLE admin.system_clients (
    tenant_id   text NOT NULL REFERENCES admin.tenants (org_code),
    client_id   text PRIMARY KEY CHECK (client_id LIKE tenant_id || '.%'),
    name        text NOT NULL CHECK (name <> ''),
    -- SHA-256 of a 32-byte random secret: a secret with 256 bits of entropy cannot be
    -- guessed or brute-forced from its hash, so a slow (argon2) hash would buy nothing.
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    roles       text[] NOT NULL DEFAULT '{system_client}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz NULL
);

CREATE INDEX system_clients_tenant_idx ON admin.system_clients (tenant_id);

ALTER TABLE admin.system_clients ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin.system_clients FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON admin.system_clients
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
