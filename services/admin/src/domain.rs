//! Admin's domain types: tenants (情報保有機関), staff users (職員) and system clients.
//!
//! Inputs are parsed into these types at the edge; the store only sees valid values.

use chrono::{DateTime, NaiveDate, Utc};
use chukan_auth::Role;
use chukan_core::{Clock, ids::OrgCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

chukan_db::text_enum! {
    /// 団体区分 (kind of organisation).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum TenantKind {
        /// 市区町村
        Municipality = "municipality",
        /// 都道府県
        Prefecture = "prefecture",
        /// 一部事務組合・広域連合
        Union = "union",
    }
}

/// A tenant to register (operator CLI `chukan admin tenant add`).
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub org_code: OrgCode,
    pub name: String,
    pub kind: TenantKind,
    pub population: i64,
    /// "east" or "west": the region that takes this tenant's writes.
    pub home_region: String,
    /// 一括登録グループ (upload group) A–H.
    pub upload_group: Option<char>,
    /// 即時処理: replica uploads are applied as they arrive, not by the nightly batch.
    pub immediate_replica_processing: bool,
}

impl NewTenant {
    /// Checks what the types cannot, so the operator gets a clear message, not an SQL error.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("tenant name is empty".into());
        }
        if !matches!(self.home_region.as_str(), "east" | "west") {
            return Err(format!(
                "home region must be east or west, not {:?}",
                self.home_region
            ));
        }
        check_population(self.population)?;
        check_upload_group(self.upload_group)
    }

    /// Whether this tenant may be created in the cell named `cell` (its `region`): a cell's
    /// admin.tenants holds exactly the organisations homed in it (ADR 0006), so another home
    /// region is refused with the cell to create it in.
    pub fn check_homed_in(&self, cell: &str) -> Result<(), String> {
        if self.home_region == cell {
            return Ok(());
        }
        Err(format!(
            "home region {:?} is not this cell's ({cell:?}): create the tenant in the {} cell \
             (run `chukan admin create-tenant` with that cell's settings, region = {:?})",
            self.home_region, self.home_region, self.home_region
        ))
    }
}

fn check_population(population: i64) -> Result<(), String> {
    if population <= 0 {
        return Err("population must be positive".into());
    }
    Ok(())
}

fn check_upload_group(group: Option<char>) -> Result<(), String> {
    match group {
        Some(g) if !('A'..='H').contains(&g) => {
            Err(format!("upload group must be A to H, not {g:?}"))
        }
        _ => Ok(()),
    }
}

/// A change to a tenant's settings (operator CLI `chukan admin update-tenant`); `None`
/// leaves a setting as it is. Name, org code and home region are not changed here.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    pub kind: Option<TenantKind>,
    pub population: Option<i64>,
    /// `Some(None)` takes the tenant out of every upload group.
    pub upload_group: Option<Option<char>>,
    pub immediate_replica_processing: Option<bool>,
}

impl TenantUpdate {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(population) = self.population {
            check_population(population)?;
        }
        if let Some(group) = self.upload_group {
            check_upload_group(group)?;
        }
        Ok(())
    }
}

/// A registered tenant (情報保有機関) as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    /// 機関コード (organisation code), also the tenant id.
    #[schema(value_type = OrgCode)]
    pub org_code: String,
    /// 団体名 (name of the organisation).
    pub name: String,
    /// 団体区分: `municipality` (市区町村), `prefecture` (都道府県) or `union` (一部事務組合・広域連合).
    #[schema(example = "municipality")]
    pub kind: String,
    /// 人口 (population).
    pub population: i64,
    /// The region that takes this tenant's writes: `east` or `west`.
    #[schema(example = "east")]
    pub home_region: String,
    /// 一括登録グループ (upload group) A–H.
    #[schema(example = "C")]
    pub upload_group: Option<String>,
    /// 即時処理: replica uploads are applied as they arrive, not by the nightly batch.
    pub immediate_replica_processing: bool,
    /// Increases with every change of the settings above.
    #[schema(example = 1)]
    pub revision: i64,
    pub created_at: DateTime<Utc>,
}

impl Tenant {
    /// The `tenant.changed` announcement of these settings (no personal data).
    pub fn changed_event(&self) -> chukan_proto::TenantChanged {
        chukan_proto::TenantChanged {
            org_code: self.org_code.clone(),
            kind: self.kind.clone(),
            population: self.population,
            upload_group: self.upload_group.clone().unwrap_or_default(),
            home_region: self.home_region.clone(),
            immediate_replica_processing: self.immediate_replica_processing,
            revision: self.revision,
        }
    }
}

/// バッチ処理の状況 (batch status, F10): one batch run as its latest progress report left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BatchRun {
    /// The run (one per job, tenant and night, or per immediate processing).
    pub run_id: Uuid,
    /// What runs, e.g. `replica-uploads` (副本登録).
    #[schema(example = "replica-uploads")]
    pub job: String,
    /// `running` (処理中), `done` (完了) or `failed` (異常終了).
    #[schema(example = "done")]
    pub state: String,
    /// Records processed so far.
    pub processed: i64,
    /// Records known to the run; 0 when not known.
    pub total: i64,
    /// Records carried to the next night (quota reached, 繰越).
    pub carried: i64,
    /// Records refused so far (エラー).
    pub rejected: i64,
    pub started_at: DateTime<Utc>,
    /// When the run last reported; the row keeps the newest report.
    pub updated_at: DateTime<Utc>,
    /// 概要 (a short summary for the operator; no personal data).
    #[schema(example = "副本登録: 120000/120000 件処理")]
    pub summary: String,
}

/// A `batch.progress` event parsed for storing: the tenant it belongs to and the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// 機関コード, or empty for a platform-wide run.
    pub tenant: String,
    pub run: BatchRun,
}

impl BatchReport {
    /// Parses the event; an error names what is wrong (the message is then dead-lettered).
    pub fn from_event(e: &chukan_proto::BatchProgress) -> Result<Self, String> {
        if !e.tenant.is_empty() && OrgCode::parse(&e.tenant).is_err() {
            return Err("tenant is not an organisation code".into());
        }
        let run_id = Uuid::parse_str(&e.run_id).map_err(|_| "run_id is not a UUID")?;
        if e.job.trim().is_empty() {
            return Err("job is empty".into());
        }
        if !matches!(e.state.as_str(), "running" | "done" | "failed") {
            return Err(format!("unknown state {:?}", e.state));
        }
        if [e.processed, e.total, e.carried, e.rejected]
            .iter()
            .any(|n| *n < 0)
        {
            return Err("a count is negative".into());
        }
        let at = |ms: i64, what: &str| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{what} is out of range"))
        };
        Ok(Self {
            tenant: e.tenant.clone(),
            run: BatchRun {
                run_id,
                job: e.job.clone(),
                state: e.state.clone(),
                processed: e.processed,
                total: e.total,
                carried: e.carried,
                rejected: e.rejected,
                started_at: at(e.started_at_ms, "started_at_ms")?,
                updated_at: at(e.updated_at_ms, "updated_at_ms")?,
                summary: e.summary.clone(),
            },
        })
    }
}

/// A user to create (operator CLI seeding the first administrators).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login_id: String,
    pub display_name: String,
    pub password: String,
    pub roles: Vec<Role>,
    pub department: Option<String>,
}

/// A staff user (職員) as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    /// ユーザーID (login id), unique in the tenant.
    pub login_id: String,
    /// 氏名 (display name).
    pub display_name: String,
    /// 権限: `system_admin` (システム管理者) and/or `business_staff` (業務担当者).
    #[schema(example = json!(["business_staff"]))]
    pub roles: Vec<String>,
    /// 所属 (department).
    pub department: Option<String>,
    /// 有効期間の開始日 (first valid day, Japan date).
    pub valid_from: NaiveDate,
    /// 有効期間の終了日 (last valid day, inclusive); none for open-ended.
    pub valid_to: Option<NaiveDate>,
    /// Failed logins in a row since the last success (or since the last lock expired).
    pub failed_logins: i32,
    /// ロック中 (locked after too many failed logins, for sources the account has not
    /// logged in from recently).
    pub locked: bool,
    pub locked_at: Option<DateTime<Utc>>,
    /// When the lock expires by itself (shown while locked).
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl User {
    /// The user as seen at `now`: a lock whose time has passed is no lock.
    pub fn as_of(mut self, now: DateTime<Utc>) -> Self {
        self.locked = self.locked_until.is_some_and(|until| until > now);
        if !self.locked {
            self.locked_until = None;
        }
        self
    }
}

/// What login needs to know about a user; stays inside the crate.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub id: Uuid,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub department: Option<String>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

impl LoginRecord {
    /// Valid on `today` (Japan date): valid_from ≤ today ≤ valid_to (inclusive last day).
    pub fn valid_on(&self, today: NaiveDate) -> bool {
        valid_on(self.valid_from, self.valid_to, today)
    }
}

/// valid_from ≤ day ≤ valid_to, where valid_to is the last valid day and None is open-ended.
pub fn valid_on(valid_from: NaiveDate, valid_to: Option<NaiveDate>, day: NaiveDate) -> bool {
    valid_from <= day && valid_to.is_none_or(|to| day <= to)
}

/// A system client (業務システム) as the API lists it: never the secret or its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemClient {
    /// `<機関コード>.<hex>`: the tenant is part of the id.
    #[schema(example = "1310010000000001.0f1e2d3c4b5a69788796a5b4c3d2e1f0")]
    pub client_id: String,
    /// クライアント名 (a name for people).
    pub name: String,
    /// Always `system_client`.
    #[schema(example = json!(["system_client"]))]
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// What client-credentials login needs to know about a client.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub secret_hash: Vec<u8>,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// 部署 the client works for; its tokens carry it (the inquiry department check).
    pub department: Option<String>,
}

/// An administrator row as the too-few-administrators rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct AdminValidity {
    pub id: Uuid,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
}

/// The rule of DOMAIN §8: a tenant keeps at least this many valid administrators.
pub const MIN_ADMINISTRATORS: usize = 2;

/// Would ending `target`'s validity after `new_valid_to` leave fewer than
/// [`MIN_ADMINISTRATORS`] administrators valid from the next day on?
///
/// Counts the other administrators valid on the day after `new_valid_to` (the first day
/// the target is gone).
pub fn too_few_administrators_after(
    admins: &[AdminValidity],
    target: Uuid,
    new_valid_to: NaiveDate,
) -> bool {
    let first_day_without = new_valid_to.succ_opt().unwrap_or(new_valid_to);
    too_few_administrators_without(admins, target, first_day_without)
}

/// Would `target` ceasing to be an administrator on `day` (its role taken away, or its
/// validity ended the day before) leave fewer than [`MIN_ADMINISTRATORS`] administrators
/// valid that day?
pub fn too_few_administrators_without(
    admins: &[AdminValidity],
    target: Uuid,
    day: NaiveDate,
) -> bool {
    let remaining = admins
        .iter()
        .filter(|a| a.id != target)
        .filter(|a| valid_on(a.valid_from, a.valid_to, day))
        .count();
    remaining < MIN_ADMINISTRATORS
}

/// Stored name of a role (the same as its serde name).
pub fn role_name(role: Role) -> &'static str {
    role.name()
}

/// An organisation's role from its stored name; unknown names — and the platform's role,
/// which no organisation user or client may hold — are dropped by callers (never widen
/// access).
pub fn role_from_name(name: &str) -> Option<Role> {
    match name {
        "system_admin" => Some(Role::SystemAdmin),
        "business_staff" => Some(Role::BusinessStaff),
        "system_client" => Some(Role::SystemClient),
        _ => None,
    }
}

/// Today in Japan (every validity date is a Japan date).
pub fn japan_today(clock: &dyn Clock) -> NaiveDate {
    chukan_core::calendar::japan_date(clock.now())
}

/// A login id: 1–64 visible characters, no spaces or control characters.
pub fn check_login_id(login_id: &str) -> Result<(), &'static str> {
    let n = login_id.chars().count();
    if n == 0 || n > 64 {
        return Err("ユーザーIDは1文字以上64文字以内で指定してください。");
    }
    if login_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("ユーザーIDに空白や制御文字は使えません。");
    }
    Ok(())
}

/// A display name: 1–100 characters, not only spaces.
pub fn check_display_name(name: &str) -> Result<(), &'static str> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > 100 {
        return Err("氏名（表示名）は1文字以上100文字以内で指定してください。");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("氏名（表示名）に制御文字は使えません。");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn admin(n: u128, from: &str, to: Option<&str>) -> AdminValidity {
        AdminValidity {
            id: Uuid::from_u128(n),
            valid_from: d(from),
            valid_to: to.map(d),
        }
    }

    #[test]
    fn validity_is_inclusive_of_both_ends() {
        let from = d("2026-04-01");
        let to = Some(d("2026-04-30"));
        assert!(valid_on(from, to, d("2026-04-01")));
        assert!(valid_on(from, to, d("2026-04-30")));
        assert!(!valid_on(from, to, d("2026-05-01")));
        assert!(!valid_on(from, to, d("2026-03-31")));
        assert!(valid_on(from, None, d("2099-01-01")));
    }

    #[test]
    fn two_other_open_ended_admins_allow_ending_a_third() {
        let admins = [
            admin(1, "2026-01-01", None),
            admin(2, "2026-01-01", None),
            admin(3, "2026-01-01", None),
        ];
        assert!(!too_few_administrators_after(
            &admins,
            Uuid::from_u128(3),
            d("2026-06-01")
        ));
    }

    #[test]
    fn ending_one_of_two_admins_is_refused() {
        let admins = [admin(1, "2026-01-01", None), admin(2, "2026-01-01", None)];
        assert!(too_few_administrators_after(
            &admins,
            Uuid::from_u128(2),
            d("2026-12-31")
        ));
    }

    #[test]
    fn an_admin_whose_own_validity_ends_first_does_not_count() {
        let admins = [
            admin(1, "2026-01-01", None),
            admin(2, "2026-01-01", Some("2026-06-30")),
            admin(3, "2026-01-01", None),
        ];
        // Admin 3 ends on 2026-07-31, but admin 2 is gone by then: only admin 1 remains.
        assert!(too_few_administrators_after(
            &admins,
            Uuid::from_u128(3),
            d("2026-07-31")
        ));
        // Ending admin 3 on 2026-06-15 leaves admins 1 and 2 on 2026-06-16.
        assert!(!too_few_administrators_after(
            &admins,
            Uuid::from_u128(3),
            d("2026-06-15")
        ));
    }

    #[test]
    fn tenant_updates_are_checked_and_events_carry_every_setting() {
        let mut u = TenantUpdate {
            population: Some(0),
            ..TenantUpdate::default()
        };
        assert!(u.validate().is_err());
        u.population = Some(5000);
        u.upload_group = Some(Some('I'));
        assert!(u.validate().is_err());
        u.upload_group = Some(None);
        assert!(u.validate().is_ok());

        let t = Tenant {
            org_code: "0123456789012345".into(),
            name: "テスト市".into(),
            kind: "union".into(),
            population: 42,
            home_region: "west".into(),
            upload_group: None,
            immediate_replica_processing: true,
            revision: 3,
            created_at: Utc::now(),
        };
        let e = t.changed_event();
        assert_eq!(e.org_code, "0123456789012345");
        assert_eq!(e.kind, "union");
        assert_eq!(e.population, 42);
        assert_eq!(e.upload_group, "");
        assert_eq!(e.home_region, "west");
        assert!(e.immediate_replica_processing);
        assert_eq!(e.revision, 3);
    }

    #[test]
    fn batch_progress_is_parsed_or_refused() {
        let good = chukan_proto::BatchProgress {
            run_id: Uuid::now_v7().to_string(),
            job: "replica-uploads".into(),
            tenant: "0123456789012345".into(),
            state: "running".into(),
            processed: 10,
            total: 100,
            carried: 0,
            rejected: 1,
            started_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_001_000,
            summary: "副本登録".into(),
        };
        let report = BatchReport::from_event(&good).unwrap();
        assert_eq!(report.tenant, "0123456789012345");
        assert_eq!(report.run.processed, 10);
        assert_eq!(report.run.updated_at.timestamp_millis(), 1_700_000_001_000);
        let platform = chukan_proto::BatchProgress {
            tenant: String::new(),
            ..good.clone()
        };
        assert_eq!(BatchReport::from_event(&platform).unwrap().tenant, "");
        for bad in [
            chukan_proto::BatchProgress {
                run_id: "nope".into(),
                ..good.clone()
            },
            chukan_proto::BatchProgress {
                state: "paused".into(),
                ..good.clone()
            },
            chukan_proto::BatchProgress {
                tenant: "13".into(),
                ..good.clone()
            },
            chukan_proto::BatchProgress {
                rejected: -1,
                ..good.clone()
            },
            chukan_proto::BatchProgress {
                job: " ".into(),
                ..good.clone()
            },
            chukan_proto::BatchProgress {
                updated_at_ms: i64::MAX,
                ..good.clone()
            },
        ] {
            assert!(BatchReport::from_event(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_stored_names() {
        for role in [Role::SystemAdmin, Role::BusinessStaff, Role::SystemClient] {
            assert_eq!(role_from_name(role_name(role)), Some(role));
        }
        assert_eq!(role_from_name("root"), None);
        // No organisation user or client can be given the platform's role.
        assert_eq!(role_from_name("platform_operator"), None);
    }

    #[test]
    fn login_ids_and_tenants_are_checked() {
        assert!(check_login_id("tanaka01").is_ok());
        assert!(check_login_id("").is_err());
        assert!(check_login_id("a b").is_err());
        assert!(check_login_id(&"x".repeat(65)).is_err());
        let mut t = NewTenant {
            org_code: OrgCode::parse("0123456789012345").unwrap(),
            name: "テスト市".into(),
            kind: TenantKind::Municipality,
            population: 1000,
            home_region: "east".into(),
            upload_group: Some('A'),
            immediate_replica_processing: false,
        };
        assert!(t.validate().is_ok());
        t.upload_group = Some('Z');
        assert!(t.validate().is_err());
        t.upload_group = None;
        t.home_region = "north".into();
        assert!(t.validate().is_err());
        assert_eq!(TenantKind::parse("union"), Some(TenantKind::Union));
    }

    #[test]
    fn a_tenant_is_created_only_in_the_cell_it_is_homed_in() {
        let mut t = NewTenant {
            org_code: OrgCode::parse("0123456789012345").unwrap(),
            name: "テスト市".into(),
            kind: TenantKind::Municipality,
            population: 1000,
            home_region: "west".into(),
            upload_group: None,
            immediate_replica_processing: false,
        };
        assert!(t.check_homed_in("west").is_ok());
        let refused = t.check_homed_in("east").unwrap_err();
        assert!(refused.contains("west cell"), "{refused}");
        t.home_region = "east".into();
        assert!(t.check_homed_in("east").is_ok());
    }

    #[test]
    fn every_tenant_kind_is_shown_as_it_is_stored() {
        for &k in TenantKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(TenantKind::parse(k.as_str()), Some(k));
        }
    }
}
