//! Who is calling the admin API: the operator, a tenant, or nobody.
//!
//! Secrets are never stored: the operator token is kept as its sha256 in
//! memory, tenant tokens as their sha256 in the store. Tokens are 256 random
//! bits, so a plain hash is enough; comparisons run in constant time.

use axum::extract::FromRequestParts;
use http::request::Parts;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::AdminState;
use super::problem::ApiError;

/// The caller of one admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    /// A tenant token: its tenant, and the token's id.
    Tenant(String, String),
}

impl Caller {
    /// Who this is, as the deploy history records it.
    pub fn actor(&self) -> String {
        match self {
            Self::Operator => "operator".to_string(),
            Self::Tenant(_, token) => format!("token {token}"),
        }
    }

    /// Operator-only routes.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Self::Operator => Ok(()),
            Self::Tenant(..) => Err(ApiError::Forbidden(
                "this route needs the operator token".into(),
            )),
        }
    }

    /// Routes under `/v1/tenants/{tenant}/`.
    pub fn require_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Self::Operator => Ok(()),
            Self::Tenant(own, _) if own == tenant => Ok(()),
            Self::Tenant(..) => Err(ApiError::Forbidden(
                "this token belongs to another tenant".into(),
            )),
        }
    }
}

/// The operator's credential.
pub struct OperatorToken {
    hash: [u8; 32],
}

impl OperatorToken {
    pub fn new(secret: &str) -> Self {
        Self {
            hash: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    fn matches(&self, hash: &[u8; 32]) -> bool {
        self.hash.ct_eq(hash).into()
    }
}

/// Where the operator token came from at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorTokenSource {
    Environment,
    ExistingFile(std::path::PathBuf),
    Generated(std::path::PathBuf),
}

/// Reads `BERTH_OPERATOR_TOKEN` (passed in as `from_env`), else
/// `DATA_DIR/operator-token`, else generates one there with mode 0600.
pub fn load_operator_token(
    from_env: Option<String>,
    data_dir: &Path,
) -> std::io::Result<(OperatorToken, OperatorTokenSource)> {
    if let Some(secret) = from_env.filter(|s| !s.trim().is_empty()) {
        return Ok((
            OperatorToken::new(secret.trim()),
            OperatorTokenSource::Environment,
        ));
    }
    let path = data_dir.join("operator-token");
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => {
            return Ok((
                OperatorToken::new(secret.trim()),
                OperatorTokenSource::ExistingFile(path),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = new_secret("berth_op_")?;
    write_private(&path, &secret)?;
    Ok((
        OperatorToken::new(&secret),
        OperatorTokenSource::Generated(path),
    ))
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A new secret: a prefix that says what it is, then 256 random bits.
pub fn new_secret(prefix: &str) -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// A short random id for listing and revoking tokens.
pub fn new_token_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("tok_{}", hex::encode(bytes)))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl FromRequestParts<Arc<AdminState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::BadToken)?;
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if state.operator.matches(&hash) {
            return Ok(Self::Operator);
        }
        let hex_hash = hex::encode(hash);
        match state.control.token_by_hash(&hex_hash).await? {
            Some((token, stored)) if bool::from(stored.as_bytes().ct_eq(hex_hash.as_bytes())) => {
                Ok(Self::Tenant(token.tenant, token.id))
            }
            _ => Err(ApiError::BadToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tokens_reach_only_their_tenant() {
        let caller = Caller::Tenant("acme".into(), "t1".into());
        assert!(caller.require_tenant("acme").is_ok());
        assert!(caller.require_tenant("globex").is_err());
        assert!(caller.require_operator().is_err());
        assert!(Caller::Operator.require_tenant("acme").is_ok());
    }

    #[test]
    fn generated_operator_token_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = load_operator_token(None, dir.path()).unwrap();
        assert!(matches!(source, OperatorTokenSource::Generated(_)));
        let path = dir.path().join("operator-token");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = load_operator_token(None, dir.path()).unwrap();
        assert!(matches!(source, OperatorTokenSource::ExistingFile(_)));
        assert_eq!(first.hash, second.hash);
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(second.matches(&Sha256::digest(secret.trim().as_bytes()).into()));
    }
}
