//! Per-service store of tenant keys: `{schema}.tenant_keys`, wrapped by the KEK.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use tokio_postgres::GenericClient;

use crate::{CryptoError, Kek, TenantKeys, envelope::new_kid, random_key};

/// Why a tenant's keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("tenant key store query failed")]
    Db(#[from] tokio_postgres::Error),
    /// Wrong KEK, or a row copied from another tenant (the tenant id is the wrapping AAD).
    #[error("keys of tenant {tenant} cannot be unwrapped with this KEK")]
    Unwrap {
        tenant: String,
        #[source]
        source: CryptoError,
    },
    #[error("keys of tenant {tenant} were neither found nor created")]
    Vanished { tenant: String },
}

/// Loads, creates and caches tenants' keys for one service schema.
///
/// Clones share the cache, so one `Vault` per service is enough.
#[derive(Clone)]
pub struct Vault {
    kek: Kek,
    schema: &'static str,
    cache: Arc<RwLock<HashMap<String, Arc<TenantKeys>>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// `schema` is the service's schema (a constant of the service, never input): it is
    /// spliced into the SQL.
    pub fn new(kek: Kek, schema: &'static str) -> Vault {
        Vault {
            kek,
            schema,
            cache: Arc::default(),
        }
    }

    /// The tenant's keys: from memory, else from `{schema}.tenant_keys`, else freshly made.
    ///
    /// Creation inserts with `ON CONFLICT DO NOTHING` and reads the row back, so when two
    /// processes race, both end up with the one row that won. Call it on a connection in
    /// autocommit or a READ COMMITTED transaction, so the re-read sees the winner's row.
    pub async fn keys<C>(&self, client: &C, tenant: &str) -> Result<Arc<TenantKeys>, VaultError>
    where
        C: GenericClient + Sync,
    {
        if let Some(keys) = self.cached(tenant) {
            return Ok(keys);
        }
        let keys = match self.load(client, tenant).await? {
            Some(keys) => keys,
            None => {
                self.create(client, tenant).await?;
                self.load(client, tenant)
                    .await?
                    .ok_or_else(|| VaultError::Vanished {
                        tenant: tenant.to_owned(),
                    })?
            }
        };
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another task may have loaded the same row meanwhile; keep the first for one Arc.
        Ok(cache
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(keys))
            .clone())
    }

    fn cached(&self, tenant: &str) -> Option<Arc<TenantKeys>> {
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tenant)
            .cloned()
    }

    async fn load<C>(&self, client: &C, tenant: &str) -> Result<Option<TenantKeys>, VaultError>
    where
        C: GenericClient + Sync,
    {
        let sql = format!(
            "SELECT kid, wrapped_data_key, wrapped_index_key FROM {}.tenant_keys \
             WHERE tenant_id = $1",
            self.schema
        );
        let Some(row) = client.query_opt(&sql, &[&tenant]).await? else {
            return Ok(None);
        };
        let kid: String = row.try_get(0)?;
        // Ciphertexts carry the kid behind a one-byte length.
        if kid.len() > usize::from(u8::MAX) {
            return Err(VaultError::Unwrap {
                tenant: tenant.to_owned(),
                source: CryptoError::Malformed,
            });
        }
        let wrapped_data: Vec<u8> = row.try_get(1)?;
        let wrapped_index: Vec<u8> = row.try_get(2)?;
        let unwrap = |wrapped: &[u8], purpose: &str| {
            self.kek
                .unwrap_key(wrapped, &wrapping_aad(purpose, tenant))
                .map_err(|source| VaultError::Unwrap {
                    tenant: tenant.to_owned(),
                    source,
                })
        };
        let data_key = unwrap(&wrapped_data, "data")?;
        let index_key = unwrap(&wrapped_index, "index")?;
        Ok(Some(TenantKeys::from_parts(kid, &data_key, &index_key)))
    }

    async fn create<C>(&self, client: &C, tenant: &str) -> Result<(), VaultError>
    where
        C: GenericClient + Sync,
    {
        let kid = new_kid();
        let (data_key, index_key) = (random_key(), random_key());
        let wrapped_data = self.kek.wrap(&data_key, &wrapping_aad("data", tenant));
        let wrapped_index = self.kek.wrap(&index_key, &wrapping_aad("index", tenant));
        let sql = format!(
            "INSERT INTO {}.tenant_keys (tenant_id, kid, wrapped_data_key, wrapped_index_key) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
            self.schema
        );
        client
            .execute(&sql, &[&tenant, &kid, &wrapped_data, &wrapped_index])
            .await?;
        Ok(())
    }
}

/// The tenant id binds a wrapped key to its row; the purpose stops the data key and the
/// index key from being swapped.
fn wrapping_aad(purpose: &str, tenant: &str) -> Vec<u8> {
    format!("{purpose}:{tenant}").into_bytes()
}
