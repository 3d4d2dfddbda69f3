//! The `server.*` blocks that a named upstream may override key by key (`health`,
//! `circuitBreaker`, `retry`, `timeouts`, `tcpPool`). Each is declared once through
//! [`section!`], which also generates its `*Override` twin with every field optional, so an
//! upstream inherits every key it does not set from `server.*` without a second hand-written
//! struct drifting out of sync.

use crate::duration::Dur;
use serde::{Deserialize, Serialize};

macro_rules! section {
    (
        $(#[$meta:meta])*
        $name:ident / $over:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// Per-upstream override: unset keys inherit the `server.*` value.
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $over {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// This block with the keys `over` sets replaced.
            pub fn merged(&self, over: &$over) -> Self {
                Self { $( $field: over.$field.clone().unwrap_or_else(|| self.$field.clone()), )* }
            }
        }
    };
}

/// How a health probe decides: connect only, or `GET httpPath` expecting 2xx/3xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Tcp,
    Http,
}

section! {
    /// `health:` active health checking of backends.
    HealthConfig / HealthOverride {
        enabled: bool = true,
        interval: Dur = Dur::secs(5),
        timeout: Dur = Dur::secs(2),
        #[serde(alias = "unhealthy_threshold")]
        unhealthy_threshold: u32 = 3,
        #[serde(alias = "healthy_threshold")]
        healthy_threshold: u32 = 2,
        #[serde(alias = "check_type")]
        check_type: CheckType = CheckType::Tcp,
        #[serde(alias = "http_path")]
        http_path: String = "/health".to_string(),
    }
}

section! {
    /// `circuitBreaker:` per-backend breaker (resilience issue; rejected while enabled until then).
    CircuitBreakerConfig / CircuitBreakerOverride {
        enabled: bool = false,
        #[serde(alias = "failure_threshold")]
        failure_threshold: u32 = 5,
        #[serde(alias = "success_threshold")]
        success_threshold: u32 = 2,
        timeout: Dur = Dur::secs(30),
    }
}

section! {
    /// `retry:` tries on another backend after a connect failure.
    RetryConfig / RetryOverride {
        attempts: u32 = 1,
    }
}

section! {
    /// `timeouts:` upstream connect, whole upstream exchange (L7), idle session (L4/keep-alive).
    TimeoutsConfig / TimeoutsOverride {
        connect: Dur = Dur::secs(5),
        request: Dur = Dur::secs(30),
        idle: Dur = Dur::secs(60),
    }
}

section! {
    /// `tcpPool:` reuse of upstream connections by the L7 client.
    TcpPoolConfig / TcpPoolOverride {
        enabled: bool = true,
        #[serde(alias = "max_idle")]
        max_idle: u32 = 64,
        #[serde(alias = "idle_timeout")]
        idle_timeout: Dur = Dur::secs(60),
        #[serde(alias = "max_lifetime")]
        max_lifetime: Dur = Dur::secs(300),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_inherits_unset_keys() {
        let server = HealthConfig {
            interval: Dur::secs(10),
            check_type: CheckType::Http,
            ..HealthConfig::default()
        };
        let over: HealthOverride =
            serde_yaml::from_str("timeout: 1s\nhealthy_threshold: 4").unwrap();
        let merged = server.merged(&over);
        assert_eq!(merged.interval, Dur::secs(10));
        assert_eq!(merged.timeout, Dur::secs(1));
        assert_eq!(merged.healthy_threshold, 4);
        assert_eq!(merged.check_type, CheckType::Http);
    }

    #[test]
    fn override_rejects_unknown_keys() {
        let err = serde_yaml::from_str::<HealthOverride>("intervall: 1s").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `intervall`"),
            "{err}"
        );
    }
}
