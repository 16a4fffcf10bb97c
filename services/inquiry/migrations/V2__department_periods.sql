-- 部署の有効期間 (departments' validity history): admin announces every period of a
-- department; an inquiry is held to the period valid on its Japan date. Each element:
-- {"valid_from": "YYYY-MM-DD", "valid_to": "YYYY-MM-DD" | null, "excluded": ["JT…", …]}.
-- Empty for announcements that carried no history: then excluded_procedures holds every day.
ALTER TABLE inquiry.departments ADD COLUMN periods jsonb NOT NULL DEFAULT '[]';
