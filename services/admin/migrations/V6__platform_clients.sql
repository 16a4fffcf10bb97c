-- The platform realm (プラットフォーム運用者: J-LIS, the ministry): machine accounts with no
-- tenant, given tokens with the platform_operator role alone. client_id = 'platform.<hex>',
-- so the realm is known from the id before any lookup. Platform-level rows with no
-- organisation data: no RLS.
CREATE TABLE admin.platform_clients (
    client_id   text PRIMARY KEY CHECK (client_id LIKE 'platform.%'),
    name        text NOT NULL CHECK (name <> ''),
    -- SHA-256 of a 32-byte random secret (as admin.system_clients).
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz NULL
);
