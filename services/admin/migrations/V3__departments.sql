-- 部署 (departments) of a tenant, with the procedures they may not inquire for
-- (対象外事務手続コード, up to 480: enhancement #7). Announced to inquiry as department.changed.
CREATE TABLE admin.departments (
    tenant_id           text NOT NULL REFERENCES admin.tenants (org_code),
    -- 部署コード: what users' and clients' `department` and the bulk inquiry file name
    -- (a 20-column field there), so at most 20 characters without blanks.
    code                text NOT NULL CHECK (char_length(code) BETWEEN 1 AND 20 AND code !~ '\s'),
    name                text NOT NULL CHECK (name <> ''),
    excluded_procedures text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(excluded_procedures) <= 480),
    -- Increases with every change; consumers keep the highest.
    revision            bigint NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, code)
);

ALTER TABLE admin.departments ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin.departments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON admin.departments
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));

-- A business system works for one department, so its tokens carry that department's limits.
ALTER TABLE admin.system_clients ADD COLUMN department text NULL;
