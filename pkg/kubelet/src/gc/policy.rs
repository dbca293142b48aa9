//! The garbage collection and log rotation settings kubelet takes as flags, read from
//! `--kubelet-arg`: `image-gc-high-threshold` and `image-gc-low-threshold` (percent of the
//! image filesystem), `minimum-image-ttl-duration` (a Go duration), `container-log-max-size`
//! (a quantity) and `container-log-max-files`, validated as kubelet validates them.

use std::time::Duration;

/// When images are garbage collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePolicy {
    /// Usage percent at or over which images are removed (100: never).
    pub high: u8,
    /// Usage percent image garbage collection frees down to.
    pub low: u8,
    /// An image first seen less long ago stays.
    pub min_age: Duration,
}

/// How container logs are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// A running container's log over this many bytes is rotated.
    pub max_size: u64,
    /// At most this many files (the current one included) per container.
    pub max_files: usize,
}

/// Everything garbage collection and log rotation are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub images: ImagePolicy,
    pub logs: LogPolicy,
}

impl Default for Policy {
    /// kubelet's defaults: 85 and 80 percent, 2 minutes, 10Mi and 5 files.
    fn default() -> Self {
        Policy {
            images: ImagePolicy {
                high: 85,
                low: 80,
                min_age: Duration::from_secs(120),
            },
            logs: LogPolicy {
                max_size: 10 << 20,
                max_files: 5,
            },
        }
    }
}

/// The `--kubelet-arg` keys read here.
pub const KEYS: [&str; 5] = [
    "image-gc-high-threshold",
    "image-gc-low-threshold",
    "minimum-image-ttl-duration",
    "container-log-max-size",
    "container-log-max-files",
];

fn percent(key: &str, value: &str) -> Result<u8, String> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|p| (0..=100).contains(p))
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| {
            format!(
                "--kubelet-arg {key}={value:?} must be a percentage between 0 and 100, inclusive"
            )
        })
}

impl Policy {
    /// Set `key` (one of `KEYS`) to `value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "image-gc-high-threshold" => self.images.high = percent(key, value)?,
            "image-gc-low-threshold" => self.images.low = percent(key, value)?,
            "minimum-image-ttl-duration" => {
                self.images.min_age =
                    minik_api::quantity::parse_go_duration(value).ok_or_else(|| {
                        format!(
                            "--kubelet-arg {key}={value:?} is not a duration (e.g. 2m, 90s, 0s)"
                        )
                    })?
            }
            "container-log-max-size" => {
                self.logs.max_size = minik_api::quantity::parse(value)
                    .map(|milli| milli / 1000)
                    .and_then(|b| u64::try_from(b).ok())
                    .filter(|b| *b > 0)
                    .ok_or_else(|| {
                        format!(
                            "--kubelet-arg {key}={value:?} is not a positive quantity (e.g. 10Mi)"
                        )
                    })?
            }
            "container-log-max-files" => {
                self.logs.max_files =
                    value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n| *n >= 2)
                        .ok_or_else(|| {
                            format!("--kubelet-arg {key}={value:?} must be a number greater than 1")
                        })?
            }
            other => {
                return Err(format!(
                    "--kubelet-arg {other:?} is not a garbage collection setting"
                ));
            }
        }
        Ok(())
    }

    /// Check the settings together (after every key is set).
    pub fn validate(&self) -> Result<(), String> {
        if self.images.low >= self.images.high {
            return Err(format!(
                "--kubelet-arg image-gc-low-threshold ({}) must be less than \
                 image-gc-high-threshold ({})",
                self.images.low, self.images.high
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_validated_as_kubelet_does() {
        let mut p = Policy::default();
        assert_eq!(p.images.high, 85);
        p.set("image-gc-high-threshold", "1").unwrap();
        p.set("image-gc-low-threshold", "0").unwrap();
        p.set("minimum-image-ttl-duration", "0s").unwrap();
        p.set("container-log-max-size", "10Ki").unwrap();
        p.set("container-log-max-files", "3").unwrap();
        p.validate().unwrap();
        assert_eq!(
            p,
            Policy {
                images: ImagePolicy {
                    high: 1,
                    low: 0,
                    min_age: Duration::ZERO
                },
                logs: LogPolicy {
                    max_size: 10 << 10,
                    max_files: 3
                },
            }
        );
        for (k, v) in [
            ("image-gc-high-threshold", "101"),
            ("image-gc-low-threshold", "-1"),
            ("image-gc-high-threshold", "85%"),
            ("minimum-image-ttl-duration", "2 minutes"),
            ("minimum-image-ttl-duration", "-1m"),
            ("container-log-max-size", "0"),
            ("container-log-max-size", "big"),
            ("container-log-max-files", "1"),
        ] {
            assert!(Policy::default().set(k, v).is_err(), "{k}={v}");
        }
        let mut p = Policy::default();
        p.set("image-gc-low-threshold", "85").unwrap();
        let e = p.validate().unwrap_err();
        assert!(e.contains("must be less than"), "{e}");
    }

    #[test]
    fn kubelet_args_take_the_settings() {
        let args: Vec<String> = ["image-gc-high-threshold=1", "--image-gc-low-threshold=0"]
            .map(String::from)
            .into();
        let a = crate::kubelet_args::parse(&args).unwrap();
        assert_eq!((a.gc.images.high, a.gc.images.low), (1, 0));
        let e = crate::kubelet_args::parse(&["image-gc-low-threshold=90".into()]).unwrap_err();
        assert!(e.contains("image-gc-low-threshold (90)"), "{e}");
        assert_eq!(
            crate::kubelet_args::parse(&[]).unwrap().gc,
            Policy::default()
        );
    }
}
