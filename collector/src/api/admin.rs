//! The answers of the admin routes (`/api/v1/admin/...`).

use serde::{Deserialize, Serialize};

/// What deleting a tenant removed from the data directory (`store::delete`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeletion {
    /// Parts that held only the tenant's rows, deleted.
    pub parts_deleted: u64,
    /// Parts shared with other tenants, written again without its rows.
    pub parts_rewritten: u64,
    /// With a shared bucket: parts shared with other tenants that were in the bucket already,
    /// left as they are here. The bucket's compactor writes them again without the tenant
    /// (every collector, this one too, leaves the tenant's rows in them out of its answers
    /// meanwhile), and this collector drops its copies when that is committed.
    #[serde(default)]
    pub parts_left_to_the_bucket: u64,
    /// The tenant's rows in those parts.
    pub rows_deleted: u64,
    /// Bytes on disk of the parts deleted (the rewritten ones not counted).
    pub part_bytes_deleted: u64,
    /// Its series segments (PromQL's store), deleted.
    pub series_segments_deleted: u64,
    /// Gate history, anomaly journal and quarantined files, deleted.
    pub other_files_deleted: u64,
    /// With a shared bucket: the deletion request made there (`deletions/<tenant>/…`), which
    /// the other collectors and the bucket's compactors carry out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_request: Option<String>,
    /// What could not be forgotten after the files were deleted (the store's hooks); moved to
    /// [`TenantDeleted::warnings`] in the answer.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `POST /api/v1/admin/delete_tenant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeleted {
    pub tenant: String,
    pub deleted: TenantDeletion,
    /// What could not be forgotten (the analysis state file), each a sentence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let answer = TenantDeleted {
            tenant: "pay".into(),
            deleted: TenantDeletion { parts_deleted: 3, rows_deleted: 40, ..Default::default() },
            warnings: vec!["x".into()],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(serde_json::from_str::<TenantDeleted>(&text).unwrap(), answer);
    }
}
