//! Organisations as provision keeps them (from admin's `tenant.changed`).

use deadpool_postgres::GenericClient;
use tokio_postgres::Error;

/// What provision keeps of an organisation (from admin's tenant.changed).
#[derive(Debug, Clone)]
pub struct Org {
    pub org_code: String,
    pub kind: String,
    pub population: i64,
    pub upload_group: Option<char>,
    pub immediate: bool,
}

fn org_from(row: &tokio_postgres::Row) -> Org {
    let group: Option<String> = row.get("upload_group");
    Org {
        org_code: row.get("org_code"),
        kind: row.get("kind"),
        population: row.get("population"),
        upload_group: group.and_then(|g| g.chars().next()),
        immediate: row.get("immediate"),
    }
}

/// Keeps the newest revision of an organisation's settings; an older event changes nothing.
pub async fn upsert_org(
    client: &impl GenericClient,
    org: &Org,
    revision: i64,
) -> Result<bool, Error> {
    let group = org.upload_group.map(|g| g.to_string());
    let n = client
        .execute(
            "INSERT INTO provision.orgs (org_code, kind, population, upload_group, immediate, revision)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_code) DO UPDATE SET kind = EXCLUDED.kind,
                 population = EXCLUDED.population, upload_group = EXCLUDED.upload_group,
                 immediate = EXCLUDED.immediate, revision = EXCLUDED.revision, updated_at = now()
             WHERE provision.orgs.revision < EXCLUDED.revision",
            &[
                &org.org_code,
                &org.kind,
                &org.population,
                &group,
                &org.immediate,
                &revision,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn org(client: &impl GenericClient, org_code: &str) -> Result<Option<Org>, Error> {
    let stmt = client
        .prepare_cached(
            "SELECT org_code, kind, population, upload_group::text AS upload_group, immediate
             FROM provision.orgs WHERE org_code = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&org_code])
        .await?
        .map(|r| org_from(&r)))
}

pub async fn all_orgs(client: &impl GenericClient) -> Result<Vec<Org>, Error> {
    let rows = client
        .query(
            "SELECT org_code, kind, population, upload_group::text AS upload_group, immediate
             FROM provision.orgs ORDER BY org_code",
            &[],
        )
        .await?;
    Ok(rows.iter().map(org_from).collect())
}
