//! `[telemetry]`: where the metrics and health listener listens. Without
//! the table, or without `listen`, there is no listener: a configuration
//! written before it existed runs as it did.

use std::net::SocketAddr;

use serde::Deserialize;
use spillway_settings::Problems;

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The address of the HTTP listener that serves `/metrics` (Prometheus)
    /// and `/health/live`, `/health/ready`: an IP address and a port, e.g.
    /// `127.0.0.1:9108` or `[::]:9108`. None by default: no listener.
    pub listen: Option<String>,
}

/// `[telemetry]`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Where `/metrics` and `/health/*` are served; `None`: nowhere.
    pub listen: Option<SocketAddr>,
}

impl TelemetrySettings {
    /// The checked settings, or `None` with the problems added under `key`.
    pub fn check(self, key: &str, problems: &mut Problems) -> Option<TelemetryConfig> {
        let Some(listen) = self.listen else {
            return Some(TelemetryConfig { listen: None });
        };
        let key = format!("{key}.listen");
        let allowed = "expected an IP address and a port from 1 to 65535, e.g. 127.0.0.1:9108 or [::]:9108";
        match listen.parse::<SocketAddr>() {
            Ok(address) if address.port() != 0 => Some(TelemetryConfig { listen: Some(address) }),
            Ok(_) => {
                problems.add(
                    &key,
                    format!("{listen:?} has port 0, which scrapers cannot find: {allowed}"),
                );
                None
            }
            Err(_) => {
                problems.add(&key, format!("{listen:?} is not a socket address: {allowed}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: Option<&str>) -> Result<TelemetryConfig, Vec<String>> {
        let mut problems = Problems::default();
        let settings = TelemetrySettings {
            listen: listen.map(str::to_owned),
        };
        match settings.check("telemetry", &mut problems) {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems.into_vec().iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn listen_is_an_ip_address_and_a_port() {
        assert_eq!(check(None), Ok(TelemetryConfig { listen: None }));
        assert_eq!(
            check(Some("127.0.0.1:9108")).unwrap().listen,
            Some("127.0.0.1:9108".parse().unwrap())
        );
        assert_eq!(
            check(Some("[::]:9108")).unwrap().listen,
            Some("[::]:9108".parse().unwrap())
        );
        assert_eq!(
            check(Some("localhost:9108")),
            Err(vec![
                "telemetry.listen: \"localhost:9108\" is not a socket address: expected an IP address and a port \
                 from 1 to 65535, e.g. 127.0.0.1:9108 or [::]:9108"
                    .to_owned()
            ])
        );
        assert!(check(Some("127.0.0.1")).unwrap_err()[0]
            .starts_with("telemetry.listen: \"127.0.0.1\" is not a socket address"));
        assert!(check(Some("127.0.0.1:0")).unwrap_err()[0].starts_with("telemetry.listen: \"127.0.0.1:0\" has port 0"));
    }

    #[test]
    fn the_telemetry_table_is_optional_and_checked_with_the_file() {
        const MINIMAL: &str = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\n";
        let parse = |text: &str| crate::config::parse(text, "t", &|_| None);
        assert_eq!(parse(MINIMAL).unwrap().telemetry, TelemetryConfig { listen: None });
        let on = parse(&format!("{MINIMAL}[telemetry]\nlisten = \"127.0.0.1:9108\"\n")).unwrap();
        assert_eq!(on.telemetry.listen, Some("127.0.0.1:9108".parse().unwrap()));
        let problems = |text: String| -> Vec<String> {
            parse(&text)
                .unwrap_err()
                .problems
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            problems(format!("{MINIMAL}[telemetry]\nlisten = \"9108\"\n")),
            ["telemetry.listen: \"9108\" is not a socket address: expected an IP address and a port from 1 to 65535, \
              e.g. 127.0.0.1:9108 or [::]:9108"]
        );
        assert_eq!(
            problems(format!("{MINIMAL}[telemetry]\nport = 9108\n")),
            ["telemetry.port: unknown field `port`, expected `listen`"]
        );
        assert_eq!(
            problems(format!("{MINIMAL}[telemetry]\nlisten = 9108\n")),
            ["telemetry.listen: invalid type: integer `9108`, expected a string"]
        );
    }
}
