//! Command line: what an operator can ask of the binary.

use std::path::PathBuf;

use anyhow::Context as _;
use chukan_auth::Role;
use chukan_config::Settings;
use chukan_core::ids::OrgCode;
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;

#[derive(Debug, Parser)]
#[command(name = "chukan", version, about = "自治体中間サーバー chukan")]
pub struct Args {
    /// Settings file (TOML) layered over the embedded defaults; CHUKAN__* overrides both.
    #[arg(long, global = true, env = "CHUKAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Services to run when no subcommand is given.
    #[arg(long, value_enum, default_value = "all")]
    pub target: Target,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    All,
    Admin,
    Code,
    Provision,
    Inquiry,
    Audit,
    Notice,
    Selfinfo,
    Stats,
    Relay,
    /// The staff console (接続端末の画面): its own process, a client of the API (not in `all`).
    Console,
}

impl Target {
    pub fn includes(self, service: Target) -> bool {
        (self == Target::All && service != Target::Console) || self == service
    }

    pub fn label(self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Admin => "admin",
            Target::Code => "code",
            Target::Provision => "provision",
            Target::Inquiry => "inquiry",
            Target::Audit => "audit",
            Target::Notice => "notice",
            Target::Selfinfo => "selfinfo",
            Target::Stats => "stats",
            Target::Relay => "relay",
            Target::Console => "console",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade every service's schema and the application role.
    Migrate,
    /// Run the national NWS simulator (a separate party; its own database).
    NwsSim,
    /// Show settings.
    Config {
        /// Print every key with its default and its documentation.
        #[arg(long)]
        print_defaults: bool,
    },
    /// Operator tasks on tenants, users and system clients.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Key material helpers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Registration lists (副本登録リスト): upload one and follow its processing (HTTP client).
    Replica {
        #[command(subcommand)]
        command: crate::replica::ReplicaCommand,
    },
    /// Batch jobs (夜間バッチ), run now in this process against the database and bus.
    Batch {
        #[command(subcommand)]
        command: crate::batch::BatchCommand,
    },
    /// Provision-record logs (情報提供等記録): verify a tenant's log, purge past retention.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
    /// Backups (pgBackRest, ADR 0006): verify a repository restores; rewind one organisation.
    Backup {
        #[command(subcommand)]
        command: crate::backup::BackupCommand,
    },
    /// Statistics (統計): take a replica statistics snapshot on demand, print one.
    Stats {
        #[command(subcommand)]
        command: crate::stats::StatsCommand,
    },
    /// Print the API's OpenAPI document (as served at /openapi.json), or who may call what.
    Openapi(crate::openapi::OpenApiArgs),
    /// GET each URL and fail unless every one answers 2xx (the chart's `helm test` hook).
    Probe(crate::probe::ProbeArgs),
    /// East and west cells: status, failover to the standby in the other region, failback.
    Region {
        #[command(subcommand)]
        command: crate::region::RegionCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Register an organisation (情報保有機関) as a tenant; repeating it changes nothing.
    #[command(name = "create-tenant")]
    Tenant {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "municipality")]
        kind: String,
        #[arg(long)]
        population: i64,
        /// Home region (east | west); only this cell's own (`region`) is accepted, and it is
        /// the default: a cell's admin.tenants holds exactly its organisations (ADR 0006).
        #[arg(long)]
        region: Option<String>,
        /// Upload slot group A–H.
        #[arg(long)]
        group: Option<char>,
        /// Apply replica uploads as they arrive instead of by the nightly batch (即時処理).
        #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
        immediate: bool,
    },
    /// Change an organisation's settings and announce them (tenant.changed) to the other
    /// services; with no setting given, re-announces the current ones.
    #[command(name = "update-tenant")]
    UpdateTenant {
        #[arg(long)]
        org: String,
        #[arg(long)]
        population: Option<i64>,
        /// municipality, prefecture or union.
        #[arg(long)]
        kind: Option<String>,
        /// Upload slot group A–H, or `none` to take the tenant out of every group.
        #[arg(long)]
        group: Option<String>,
        /// Apply replica uploads as they arrive instead of by the nightly batch (即時処理).
        #[arg(long, action = clap::ArgAction::Set)]
        immediate: Option<bool>,
    },
    /// Create a user; the password is read from the environment variable named here.
    #[command(name = "create-user")]
    User {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "CHUKAN_NEW_PASSWORD")]
        password_env: String,
        /// system_admin or business_staff; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        department: Option<String>,
    },
    /// Create a system client for a business system; prints its id and secret once.
    #[command(name = "create-client")]
    Client {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// 部署コード the system works for (limits its inquiries by the department's excluded
        /// procedures).
        #[arg(long)]
        department: Option<String>,
    },
    /// Create a platform client (J-LIS, the ministry): its tokens have no tenant and the
    /// platform_operator role, accepted only by platform routes. Prints its id and secret once.
    #[command(name = "create-platform-client")]
    PlatformClient {
        #[arg(long)]
        name: String,
    },
    /// Unlock a staff account as a platform operator (e.g. when no administrator of the tenant
    /// can log in); recorded with the operator and the reason in the account's trail.
    #[command(name = "unlock-user")]
    UnlockUser {
        #[arg(long)]
        tenant: String,
        /// The user's login id (ユーザーID).
        #[arg(long)]
        login: String,
        /// Who unlocks (the operator's name or id, kept in the trail).
        #[arg(long)]
        operator: String,
        /// Why (e.g. the help-desk ticket), kept in the trail.
        #[arg(long)]
        reason: String,
    },
    /// Create or replace a department (部署) and its excluded procedure codes, and announce it
    /// (department.changed) to the inquiry service.
    #[command(name = "put-department")]
    Department {
        #[arg(long)]
        tenant: String,
        /// 部署コード (1–20 characters, no blanks).
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        /// 対象外事務手続コード (JT + 14 digits), comma-separated; at most 480.
        #[arg(long, value_delimiter = ',')]
        excluded: Vec<String>,
        /// First day of this version (YYYY-MM-DD, Japan date, today or later; default today).
        #[arg(long)]
        valid_from: Option<chrono::NaiveDate>,
        /// Last day of this version (inclusive; default open-ended).
        #[arg(long)]
        valid_to: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a fresh random key (base64): 32 bytes for a KEK or an Ed25519 seed (the
    /// default), 64 for the console's cookie key (`--bytes 64`).
    Generate {
        /// How many random bytes.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(16..=1024))]
        bytes: u16,
    },
    /// Print the public keys of the configured signing keys (JSON), to register them.
    Public,
}

fn load(args: &Args) -> anyhow::Result<Settings> {
    Settings::load(args.config.as_deref()).context("settings")
}

pub async fn dispatch(args: Args) -> anyhow::Result<()> {
    match &args.command {
        None if args.target == Target::Console => crate::console::run(load(&args)?).await,
        None => crate::serve::run(load(&args)?, args.target).await,
        Some(Command::Migrate) => {
            let settings = load(&args)?;
            chukan_db::migrate(&settings.database, &crate::serve::all_migrations()).await?;
            crate::serve::declare_bus(&settings.amqp).await?;
            println!(
                "migrated: admin, code, relay, provision, inquiry, audit, notice, selfinfo, stats"
            );
            Ok(())
        }
        Some(Command::NwsSim) => {
            let settings = load(&args)?;
            let _guard = chukan_telemetry::init("nws-sim", &settings.telemetry)?;
            chukan_nws_sim::run(&settings.nws_sim, &settings.database).await
        }
        Some(Command::Config { print_defaults }) => {
            if *print_defaults {
                print!("{}", chukan_config::DEFAULTS_TOML);
                Ok(())
            } else {
                anyhow::bail!("nothing to do: use `chukan config --print-defaults`")
            }
        }
        Some(Command::Admin { command }) => admin(load(&args)?, command).await,
        Some(Command::Keys { command }) => keys(&load(&args)?, command),
        Some(Command::Replica { command }) => crate::replica::run(command).await,
        Some(Command::Batch { command }) => crate::batch::run(load(&args)?, command).await,
        Some(Command::Audit { command }) => crate::audit::run(load(&args)?, command).await,
        Some(Command::Backup { command }) => crate::backup::run(load(&args)?, command).await,
        Some(Command::Stats { command }) => crate::stats::run(load(&args)?, command).await,
        Some(Command::Openapi(openapi)) => crate::openapi::run(openapi),
        Some(Command::Probe(probe)) => crate::probe::run(probe).await,
        Some(Command::Region { command }) => crate::region::run(load(&args)?, command).await,
    }
}

async fn admin(settings: Settings, command: &AdminCommand) -> anyhow::Result<()> {
    let pool = chukan_db::app_pool(&settings.database)?;
    match command {
        AdminCommand::Tenant {
            org,
            name,
            kind,
            population,
            region,
            group,
            immediate,
        } => {
            let tenant = chukan_admin::NewTenant {
                org_code: OrgCode::parse(org).map_err(|e| anyhow::anyhow!(e.detail_ja()))?,
                name: name.clone(),
                kind: parse_tenant_kind(kind)?,
                population: *population,
                home_region: region.clone().unwrap_or_else(|| settings.region.clone()),
                upload_group: *group,
                immediate_replica_processing: *immediate,
            };
            tenant
                .check_homed_in(&settings.region)
                .map_err(|e| anyhow::anyhow!(e))?;
            let created = chukan_admin::create_tenant(&pool, &tenant).await?;
            println!(
                "{}",
                serde_json::json!({ "org_code": org, "created": created })
            );
        }
        AdminCommand::UpdateTenant {
            org,
            population,
            kind,
            group,
            immediate,
        } => {
            let org = OrgCode::parse(org).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let change = chukan_admin::TenantUpdate {
                kind: kind.as_deref().map(parse_tenant_kind).transpose()?,
                population: *population,
                upload_group: group.as_deref().map(parse_upload_group).transpose()?,
                immediate_replica_processing: *immediate,
            };
            let tenant = chukan_admin::update_tenant(&pool, &org, &change).await?;
            println!("{}", serde_json::to_value(&tenant)?);
        }
        AdminCommand::User {
            tenant,
            login,
            name,
            password_env,
            roles,
            department,
        } => {
            let org = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let password = std::env::var(password_env)
                .with_context(|| format!("password expected in ${password_env}"))?;
            let roles = roles
                .iter()
                .map(|r| parse_role(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let user = chukan_admin::NewUser {
                login_id: login.clone(),
                display_name: name.clone(),
                password,
                roles,
                department: department.clone(),
            };
            let id = chukan_admin::create_user(&pool, &org, &user).await?;
            println!("{}", serde_json::json!({ "tenant": tenant, "user_id": id }));
        }
        AdminCommand::Client {
            tenant,
            name,
            department,
        } => {
            let org = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let (client_id, secret) =
                chukan_admin::create_client(&pool, &org, name, department.as_deref()).await?;
            println!(
                "{}",
                serde_json::json!({ "tenant": tenant, "client_id": client_id, "client_secret": secret })
            );
        }
        AdminCommand::PlatformClient { name } => {
            let (client_id, secret) = chukan_admin::create_platform_client(&pool, name).await?;
            println!(
                "{}",
                serde_json::json!({ "client_id": client_id, "client_secret": secret })
            );
        }
        AdminCommand::UnlockUser {
            tenant,
            login,
            operator,
            reason,
        } => {
            let org = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let id =
                chukan_admin::unlock_user_as_operator(&pool, &org, login, operator, reason).await?;
            println!(
                "{}",
                serde_json::json!({ "tenant": tenant, "user_id": id, "unlocked": true })
            );
        }
        AdminCommand::Department {
            tenant,
            code,
            name,
            excluded,
            valid_from,
            valid_to,
        } => {
            let org = OrgCode::parse(tenant).map_err(|e| anyhow::anyhow!(e.detail_ja()))?;
            let request = chukan_admin::departments::DepartmentRequest {
                name: name.clone(),
                excluded_procedures: excluded.clone(),
                valid_from: *valid_from,
                valid_to: *valid_to,
            };
            let department = chukan_admin::put_department(&pool, &org, code, &request).await?;
            println!("{}", serde_json::to_value(&department)?);
        }
    }
    Ok(())
}

fn parse_tenant_kind(kind: &str) -> anyhow::Result<chukan_admin::TenantKind> {
    chukan_admin::TenantKind::parse(kind)
        .with_context(|| format!("unknown kind {kind:?} (municipality, prefecture, union)"))
}

/// `A`–`H`, or `none` for no group.
fn parse_upload_group(group: &str) -> anyhow::Result<Option<char>> {
    if group.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let mut chars = group.chars();
    match (chars.next(), chars.next()) {
        (Some(g @ 'A'..='H'), None) => Ok(Some(g)),
        _ => anyhow::bail!("unknown upload group {group:?} (A to H, or none)"),
    }
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .with_context(|| format!("unknown role {s:?} (system_admin, business_staff)"))
}

fn keys(settings: &Settings, command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { bytes } => {
            println!(
                "{}",
                chukan_crypto::generate_bytes_base64(usize::from(*bytes))
            )
        }
        KeysCommand::Public => {
            let relay = chukan_crypto::Signer::from_seed_base64(
                &settings.relay.signing_kid,
                settings.relay.signing_key.expose_secret(),
            )?;
            let nws = chukan_crypto::Signer::from_seed_base64(
                &settings.nws_sim.signing_kid,
                settings.nws_sim.signing_key.expose_secret(),
            )?;
            // The tree-head key goes to console.tree_head_keys ("kid=base64"), so the console
            // checks proofs without holding the signing seed.
            let audit = chukan_crypto::Signer::from_seed_base64(
                &settings.audit.signing_kid,
                settings.audit.signing_key.expose_secret(),
            )?;
            println!(
                "{}",
                serde_json::json!({
                    "relay": { "kid": relay.kid(), "public_key": relay.public_key_base64() },
                    "nws_sim": { "kid": nws.kid(), "public_key": nws.public_key_base64() },
                    "audit": { "kid": audit.kid(), "public_key": audit.public_key_base64() },
                })
            );
        }
    }
    Ok(())
}
