//! What a token says about its bearer.

use serde::{Deserialize, Serialize};

/// ロール (role) of a user or system client.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理者: manages the tenant's users, departments and settings.
    SystemAdmin,
    /// 業務担当者: staff doing inquiries, provisions and notices.
    BusinessStaff,
    /// 連携システム: a business system calling the API on its own account.
    SystemClient,
    /// プラットフォーム運用者 (J-LIS, the ministry): the platform realm, with no tenant. Accepted
    /// only by platform routes (cross-organisation statistics and operations), which show
    /// aggregates, never an organisation's personal data.
    PlatformOperator,
}

impl Role {
    /// The name used in tokens and in the OpenAPI document (`system_admin`, …).
    pub fn name(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system_admin",
            Role::BusinessStaff => "business_staff",
            Role::SystemClient => "system_client",
            Role::PlatformOperator => "platform_operator",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        [
            Role::SystemAdmin,
            Role::BusinessStaff,
            Role::SystemClient,
            Role::PlatformOperator,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Claims {
    /// User or client id (never a name or other personal data).
    pub sub: String,
    /// Tenant (情報保有機関) the caller acts for.
    pub tenant: String,
    pub roles: Vec<Role>,
    /// 部署 (department), whose excluded procedures limit inquiries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept: Option<String>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl Claims {
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }

    /// Whether the claims belong to one realm: an organisation's (a tenant, and none of the
    /// platform role) or the platform's (the platform role alone, and no tenant). A token
    /// mixing them would carry a tenant into a platform route or the platform role into an
    /// organisation's: it is never issued and never accepted.
    pub fn realm_is_consistent(&self) -> bool {
        if self.roles.contains(&Role::PlatformOperator) {
            self.tenant.is_empty() && self.roles.len() == 1 && self.dept.is_none()
        } else {
            !self.tenant.is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_snake_case_and_dept_is_optional() {
        let json = serde_json::json!({
            "sub": "u1", "tenant": "t1", "roles": ["system_admin", "business_staff", "system_client"],
            "iss": "i", "aud": "a", "iat": 1, "exp": 2, "jti": "j"
        });
        let claims: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(
            claims.roles,
            vec![Role::SystemAdmin, Role::BusinessStaff, Role::SystemClient]
        );
        assert_eq!(claims.dept, None);
        assert!(serde_json::to_value(&claims).unwrap().get("dept").is_none());
        assert!(claims.has_any(&[Role::SystemClient]));
        assert!(claims.realm_is_consistent());
    }

    #[test]
    fn the_platform_role_goes_only_without_a_tenant_and_alone() {
        let claims = |tenant: &str, roles: &[&str]| -> Claims {
            serde_json::from_value(serde_json::json!({
                "sub": "p1", "tenant": tenant, "roles": roles,
                "iss": "i", "aud": "a", "iat": 1, "exp": 2, "jti": "j"
            }))
            .unwrap()
        };
        assert!(claims("", &["platform_operator"]).realm_is_consistent());
        assert!(!claims("1310010000000001", &["platform_operator"]).realm_is_consistent());
        assert!(!claims("", &["platform_operator", "system_admin"]).realm_is_consistent());
        assert!(!claims("", &["system_admin"]).realm_is_consistent());
        assert_eq!(
            Role::parse("platform_operator"),
            Some(Role::PlatformOperator)
        );
    }
}
