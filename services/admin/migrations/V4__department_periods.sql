-- 部署の有効期間 (departments' valid-from / valid-to history, DOMAIN §8): every version of a
-- department is a period with its own name and excluded procedures. Periods of one department
-- never overlap; a change starts a new period from today or a later day and closes the one
-- before it, so nothing already in force is edited retroactively.
CREATE TABLE admin.department_periods (
    tenant_id           text NOT NULL,
    code                text NOT NULL,
    -- First and last valid day (inclusive), Japan dates; valid_to NULL is open-ended.
    valid_from          date NOT NULL,
    valid_to            date NULL CHECK (valid_to IS NULL OR valid_to >= valid_from),
    name                text NOT NULL CHECK (name <> ''),
    excluded_procedures text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(excluded_procedures) <= 480),
    -- Who recorded the period and when (a user id or "cli", never a name).
    recorded_by         text NOT NULL DEFAULT '',
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, code, valid_from),
    FOREIGN KEY (tenant_id, code) REFERENCES admin.departments (tenant_id, code)
);

-- What existed is one open period from the day it was last changed.
INSERT INTO admin.department_periods
    (tenant_id, code, valid_from, name, excluded_procedures, recorded_by, recorded_at)
SELECT tenant_id, code, (updated_at AT TIME ZONE 'Asia/Tokyo')::date, name,
       excluded_procedures, 'migration', updated_at
FROM admin.departments;

-- The department row keeps its identity and revision; its contents live in the periods.
ALTER TABLE admin.departments DROP COLUMN name;
ALTER TABLE admin.departments DROP COLUMN excluded_procedures;

ALTER TABLE admin.department_periods ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin.department_periods FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON admin.department_periods
    USING (tenant_id = current_setting('chukan.tenant', true))
    WITH CHECK (tenant_id = current_setting('chukan.tenant', true));
