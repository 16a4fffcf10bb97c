//! The business tables a per-organisation restore copies and a verify counts: every base
//! table of the business schemas with a `tenant_id` column, except the messaging and key
//! tables (the outbox, the inbox and the tenant's data keys are never rewound), listed from
//! `information_schema` at run time so a new table is covered without a code change.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use tokio_postgres::GenericClient;

/// Schemas whose organisation rows are restored; the audit log (監査) is never restored.
pub const SCHEMAS: &[&str] = &["provision", "code", "inquiry", "notice", "selfinfo"];
/// Tables of those schemas that are not business data.
const EXCLUDED: &[&str] = &["outbox", "outbox_sent", "inbox", "tenant_keys"];

/// One table: its columns (name and type, in order) and whether it records when a row was
/// made (`created_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessTable {
    pub schema: String,
    pub name: String,
    pub columns: Vec<(String, String)>,
}

impl BusinessTable {
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            chukan_db::quote_ident(&self.schema),
            chukan_db::quote_ident(&self.name)
        )
    }

    pub fn label(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| chukan_db::quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn has_created_at(&self) -> bool {
        self.columns.iter().any(|(c, _)| c == "created_at")
    }
}

/// The business tables, parents before children (foreign keys among them).
pub async fn list(client: &impl GenericClient) -> anyhow::Result<Vec<BusinessTable>> {
    let schemas: Vec<String> = SCHEMAS.iter().map(|s| (*s).to_owned()).collect();
    let excluded: Vec<String> = EXCLUDED.iter().map(|s| (*s).to_owned()).collect();
    // Generated columns cannot be copied in; they are computed again on insert.
    let rows = client
        .query(
            "SELECT c.table_schema::text, c.table_name::text, c.column_name::text,
                    format_type(a.atttypid, a.atttypmod)
               FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               JOIN pg_attribute a
                 ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                AND a.attname = c.column_name
              WHERE c.table_schema = ANY($1) AND t.table_type = 'BASE TABLE'
                AND c.table_name <> ALL($2) AND c.is_generated = 'NEVER'
                AND EXISTS (SELECT 1 FROM information_schema.columns k
                             WHERE k.table_schema = c.table_schema
                               AND k.table_name = c.table_name AND k.column_name = 'tenant_id')
              ORDER BY 1, 2, c.ordinal_position",
            &[&schemas, &excluded],
        )
        .await
        .context("listing the business tables")?;
    let mut tables: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for row in rows {
        tables
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push((row.get(2), row.get(3)));
    }
    let edges = client
        .query(
            "SELECT cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text
               FROM pg_constraint f
               JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
               JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
              WHERE f.contype = 'f' AND cn.nspname = ANY($1)",
            &[&schemas],
        )
        .await
        .context("listing foreign keys")?;
    let mut parents: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    for row in edges {
        let child = (row.get(0), row.get(1));
        let parent = (row.get(2), row.get(3));
        if child != parent && tables.contains_key(&parent) {
            parents.entry(child).or_default().insert(parent);
        }
    }
    // Kahn's order: a table comes once every parent it references has come.
    let mut ordered = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < tables.len() {
        let ready: Vec<(String, String)> = tables
            .keys()
            .filter(|k| !placed.contains(*k))
            .filter(|k| {
                parents
                    .get(*k)
                    .is_none_or(|ps| ps.iter().all(|p| placed.contains(p)))
            })
            .cloned()
            .collect();
        anyhow::ensure!(
            !ready.is_empty(),
            "業務テーブルの外部キーが循環しています (the business tables' foreign keys form a cycle)"
        );
        for key in ready {
            placed.insert(key.clone());
            ordered.push(key);
        }
    }
    Ok(ordered
        .into_iter()
        .filter_map(|key| {
            let columns = tables.remove(&key)?;
            Some(BusinessTable {
                schema: key.0,
                name: key.1,
                columns,
            })
        })
        .collect())
}

/// Refuses two clusters whose business tables differ (a migration between the backup and
/// now): copying rows between them would misplace columns.
pub fn ensure_same(live: &[BusinessTable], scratch: &[BusinessTable]) -> anyhow::Result<()> {
    let describe = |ts: &[BusinessTable]| -> BTreeMap<String, Vec<(String, String)>> {
        ts.iter().map(|t| (t.label(), t.columns.clone())).collect()
    };
    let (l, s) = (describe(live), describe(scratch));
    if l != s {
        let differing: Vec<String> = l
            .keys()
            .chain(s.keys())
            .filter(|k| l.get(*k) != s.get(*k))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        anyhow::bail!(
            "稼働中とバックアップでテーブル定義が異なります (the live and restored table definitions differ: {}); \
             次の手順: 同じマイグレーション後のバックアップから復元してください",
            differing.join(", ")
        );
    }
    Ok(())
}
