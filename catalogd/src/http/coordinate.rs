//! `/v1/coordinate/*`: network coordinates (Serf's Vivaldi model) of nodes. catalogd measures
//! no round-trip times, so its own node sits at the origin with Serf's initial error; clients
//! may store coordinates of other nodes, and reads return them as Consul does.

use serde_json::{Value, json};

/// Serf's initial coordinate: 8 zero dimensions, the maximum error, no adjustment, the minimum
/// height.
pub fn origin() -> Value {
    json!({"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0,
        "Height": 1e-05})
}
