//! What the unit tests share: a catalog's settings as `catalogd serve` parses them.

use crate::core::Config;

/// The settings of an in-memory catalogd on node `node` (sessions down to 10 ms TTLs).
pub fn config(node: &str) -> Config {
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from([
        "catalogd",
        "serve",
        "--in-memory",
        "--node",
        node,
        "--session-ttl-min",
        "10ms",
    ])
    .expect("serve flags parse");
    let crate::cli::Command::Serve(args) = cli.command else {
        panic!("a serve command");
    };
    args.config(cairn_cli::LogTap::default())
        .expect("a configuration")
}
