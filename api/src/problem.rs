//! The error body of every failed admin request.

use serde::{Deserialize, Serialize};

/// The problem document of RFC 9457, with Berth's request id.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of failure.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub request_id: String,
}
