//! The flags of `offerd serve` for autoscaling and the capacity watch.

use std::time::Duration;

use crate::autoscale::AutoscaleConfig;
use crate::autoscale::capacity::CapacityConfig;
use crate::autoscale::sources::SourceConfig;

/// Autoscaling (apps with `cairn.autoscale.*` labels) and the capacity watch.
#[derive(clap::Args, Debug)]
pub struct AutoscaleArgs {
    /// How often apps with an autoscaling policy are measured and decided on
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration)]
    pub autoscale_interval: Duration,
    /// Counters (requests, CPU seconds) are turned into rates over this much history
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::parse_duration)]
    pub autoscale_rate_window: Duration,
    /// lbconf metrics endpoints (`lbconf watch --metrics-listen`) the `rps` metric is read
    /// from, as URL,URL,...: every load balancer in front of the apps, since their counts add up
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', value_parser = metrics_url)]
    pub autoscale_lbconf: Vec<url::Url>,
    /// A Prometheus server that `prometheus:<query>` metrics are asked
    #[arg(long, value_name = "URL", value_parser = base_url)]
    pub prometheus: Option<url::Url>,
    /// Tasks no agent has had room for this long are a capacity shortfall (`capacity_needed`
    /// event, --capacity-hook)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration)]
    pub capacity_after: Duration,
    /// A shell command run (sh -c) with a new or changed shortfall as JSON on its standard
    /// input: a Terraform or cloud CLI call that adds machines
    #[arg(long, value_name = "CMD")]
    pub capacity_hook: Option<String>,
    /// How long --capacity-hook may run before its process group is killed
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::parse_duration)]
    pub capacity_hook_timeout: Duration,
}

impl AutoscaleArgs {
    /// The settings, with the agents' token to read their metrics with.
    pub fn config(
        &self,
        agent_token: Option<String>,
        tls: cairn_client::TlsOptions,
    ) -> AutoscaleConfig {
        AutoscaleConfig {
            interval: self.autoscale_interval,
            sources: SourceConfig {
                lbconf: self.autoscale_lbconf.clone(),
                prometheus: self.prometheus.clone(),
                agent_token,
                rate_window: self.autoscale_rate_window,
                interval: self.autoscale_interval,
            },
            capacity: CapacityConfig {
                after: self.capacity_after,
                hook: self.capacity_hook.clone().filter(|h| !h.trim().is_empty()),
                hook_timeout: self.capacity_hook_timeout,
            },
            tls,
        }
    }
}

fn http(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{s:?}: must be an http:// or https:// URL"));
    }
    Ok(u)
}

/// An lbconf metrics URL: `http://lb:9101` means its `/metrics`.
fn metrics_url(s: &str) -> Result<url::Url, String> {
    let mut u = http(s)?;
    if u.path() == "/" {
        u.set_path("/metrics");
    }
    Ok(u)
}

/// A server's base URL, ending in `/` so `api/v1/query` is joined under its path.
fn base_url(s: &str) -> Result<url::Url, String> {
    let mut u = http(s)?;
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_completed_as_documented() {
        assert_eq!(
            metrics_url("http://lb:9101").unwrap().as_str(),
            "http://lb:9101/metrics"
        );
        assert_eq!(
            metrics_url("http://lb:9101/x/metrics").unwrap().as_str(),
            "http://lb:9101/x/metrics"
        );
        assert_eq!(
            base_url("http://prom:9090")
                .unwrap()
                .join("api/v1/query")
                .unwrap()
                .as_str(),
            "http://prom:9090/api/v1/query"
        );
        assert_eq!(
            base_url("http://h/prom")
                .unwrap()
                .join("api/v1/query")
                .unwrap()
                .as_str(),
            "http://h/prom/api/v1/query"
        );
        assert!(metrics_url("ftp://lb").unwrap_err().contains("http://"));
        assert!(base_url("not a url").is_err());
    }
}
