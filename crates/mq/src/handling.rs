//! What every consumer's handler does with a delivery before its own work: decode the body,
//! check the tenant it names against the delivery's, open the tenant transaction that claims
//! it in the inbox, and say how a failure ends — retried later ([`retry`]: the database or a
//! peer did not answer) or dead-lettered now ([`reject`]: the message itself is wrong and will
//! never apply).

use chukan_db::{PooledClient, Transaction};

use crate::{Delivery, HandleError};

/// A transient failure of step `context`: the delivery is retried after the next delay.
pub fn retry<E: Into<anyhow::Error>>(context: &'static str) -> impl FnOnce(E) -> HandleError {
    move |e| HandleError::Retry(e.into().context(context))
}

/// A message that will never apply (a producer's defect): dead-lettered at once. `what`
/// names the defect, never a value from the message.
pub fn reject(what: impl std::fmt::Display) -> HandleError {
    HandleError::Reject(anyhow::anyhow!("{what}"))
}

impl Delivery {
    /// The body as `M`; a body that does not decode is rejected, naming the type.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, HandleError> {
        M::decode(self.body.as_slice()).map_err(|e| {
            reject(format!(
                "undecodable {}: {e}",
                std::any::type_name::<M>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message")
            ))
        })
    }

    /// Checks the tenant a message names against the delivery's tenant header: one producer
    /// set both, so a mismatch (or a tenant that is not an organisation code) is a defect,
    /// never something to guess around.
    pub fn check_tenant(&self, named: &str) -> Result<(), HandleError> {
        if named != self.tenant || chukan_core::ids::OrgCode::parse(named).is_err() {
            return Err(reject("tenant mismatch or malformed tenant"));
        }
        Ok(())
    }

    /// Opens the delivery's tenant transaction (row-level security) and claims the delivery
    /// in `schema`'s inbox for `consumer`, in one round trip after `BEGIN`. `None`: it was
    /// applied before (a redelivery) — acknowledge it and do nothing; the transaction rolls
    /// back when dropped.
    ///
    /// A consumer that reads rows it needs in the same round trip as the claim opens with
    /// [`chukan_db::tenant_tx`] and joins [`crate::inbox::claim`] with those reads instead.
    pub async fn claim<'c>(
        &self,
        client: &'c mut PooledClient,
        schema: &str,
        consumer: &str,
    ) -> Result<Option<Transaction<'c>>, HandleError> {
        let tx = chukan_db::tenant_tx(client, &self.tenant)
            .await
            .map_err(retry("begin"))?;
        let fresh = crate::inbox::claim(&tx, schema, consumer, self.id)
            .await
            .map_err(retry("inbox"))?;
        Ok(fresh.then_some(tx))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Ping {
        #[prost(string, tag = "1")]
        tenant: String,
    }

    fn delivery(tenant: &str, body: Vec<u8>) -> Delivery {
        Delivery {
            id: Uuid::new_v4(),
            tenant: tenant.into(),
            routing_key: "ping".into(),
            body,
            attempt: 0,
            traceparent: None,
        }
    }

    #[test]
    fn a_message_that_cannot_apply_is_rejected_and_a_failed_step_retried() {
        use prost::Message as _;
        let org = "1310010000000001";
        let good = delivery(org, Ping { tenant: org.into() }.encode_to_vec());
        let ping: Ping = good.decode().unwrap();
        assert!(good.check_tenant(&ping.tenant).is_ok());

        let other = delivery("2710000000000002", good.body.clone());
        assert!(matches!(
            other.check_tenant(&ping.tenant),
            Err(HandleError::Reject(_))
        ));
        let malformed = delivery(
            "t1",
            Ping {
                tenant: "t1".into(),
            }
            .encode_to_vec(),
        );
        assert!(matches!(
            malformed.check_tenant("t1"),
            Err(HandleError::Reject(_))
        ));
        let garbage = delivery(org, vec![0xff, 0xff, 0xff]);
        let Err(HandleError::Reject(why)) = garbage.decode::<Ping>() else {
            panic!("garbage decoded");
        };
        assert!(why.to_string().contains("undecodable Ping"), "{why}");

        let failed: Result<(), std::io::Error> = Err(std::io::Error::other("connection reset"));
        let Err(HandleError::Retry(why)) = failed.map_err(retry("commit")) else {
            panic!("not retried");
        };
        assert_eq!(why.to_string(), "commit");
    }
}
