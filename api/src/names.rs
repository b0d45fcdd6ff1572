//! Names checked once, where they enter, and carried as types after:
//! tenant and service names, version labels and component digests.
//!
//! Each parses from text with [`FromStr`] (and from JSON the same way), so a
//! value of one of these types is known to be valid wherever it is used.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a name, label or digest was refused; the message says what is
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

/// The first characters of `text`, so an error never echoes a huge input.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Names of tenants, services and buckets: a DNS label, as they appear in
/// host names (`{tenant}.{base-domain}`, `http://{service}.internal`).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(NameError(format!(
            "invalid name `{}`: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit",
            shown(name)
        )))
    }
}

/// Version labels: what authors write (`1.4.2`, `2026-11-27.1`, `canary`).
pub fn check_label(label: &str) -> Result<(), NameError> {
    let mut chars = label.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if first_ok && rest_ok && label.len() <= 64 {
        Ok(())
    } else {
        Err(NameError(format!(
            "invalid version label `{}`: use 1 to 64 letters, digits, `.`, `-`, `_` or `+`, starting with a letter or digit",
            shown(label)
        )))
    }
}

/// Component digests: `sha256:` and 64 lowercase hexadecimal digits.
pub fn check_digest(digest: &str) -> Result<(), NameError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(NameError(format!(
            "invalid digest `{}`: expected `sha256:` and 64 lowercase hexadecimal digits",
            shown(digest)
        )))
    }
}

macro_rules! checked_text {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(text: &str) -> Result<Self, NameError> {
                $check(text)?;
                Ok(Self(text.to_string()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(text: String) -> Result<Self, NameError> {
                $check(&text)?;
                Ok(Self(text))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

checked_text!(
    /// A tenant's name: `[a-z0-9][a-z0-9-]{0,62}`.
    TenantName,
    check_name
);
checked_text!(
    /// A service's name: `[a-z0-9][a-z0-9-]{0,62}`.
    ServiceName,
    check_name
);
checked_text!(
    /// A version's label: 1 to 64 letters, digits, `.`, `-`, `_` or `+`.
    VersionLabel,
    check_label
);
checked_text!(
    /// A component's content address: `sha256:` and 64 hexadecimal digits.
    Digest,
    check_digest
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert!("acme".parse::<TenantName>().is_ok());
        assert!("a-1".parse::<ServiceName>().is_ok());
        for bad in ["", "-a", "Acme", "a_b", "a.b", &"a".repeat(64)] {
            assert!(bad.parse::<TenantName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_allow_versions_and_words() {
        for good in ["1.4.2", "2026-11-27.1", "canary", "1.0.0+build_7"] {
            assert!(good.parse::<VersionLabel>().is_ok(), "{good}");
        }
        for bad in ["", ".1", "a/b", "a b", &"1".repeat(65)] {
            assert!(bad.parse::<VersionLabel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digests_are_sha256() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(good.parse::<Digest>().is_ok());
        assert!(good.to_uppercase().parse::<Digest>().is_err());
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("ab".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn json_is_checked_on_the_way_in() -> Result<(), NameError> {
        assert!(serde_json::from_str::<TenantName>("\"acme\"").is_ok());
        let error = serde_json::from_str::<TenantName>("\"Acme\"").err();
        assert!(error.is_some_and(|e| e.to_string().contains("lowercase")));
        let name: TenantName = "acme".parse()?;
        assert_eq!(
            serde_json::to_string(&name).ok().as_deref(),
            Some("\"acme\"")
        );
        Ok(())
    }
}
