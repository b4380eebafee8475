//! Answers of the listings in `query::native`.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/services`: every service of the tenant, with the versions seen in any signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Services {
    pub tenant: String,
    pub services: Vec<Service>,
}

/// One service in [`Services`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Its `service.version`s, sorted.
    pub versions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_round_trip() {
        let answer = Services {
            tenant: "anonymous".into(),
            services: vec![Service { name: "checkout".into(), versions: vec!["v1".into(), "v2".into()] }],
        };
        let text = serde_json::to_string(&answer).expect("encode");
        assert_eq!(text, r#"{"tenant":"anonymous","services":[{"name":"checkout","versions":["v1","v2"]}]}"#);
        assert_eq!(serde_json::from_str::<Services>(&text).expect("decode"), answer);
    }
}
