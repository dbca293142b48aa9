//! What a remote command writes on its error stream when it ends: v4/v5 a JSON
//! `metav1.Status` (as the kubelet marshals it, field order included); v1-v3 the failure's
//! message as plain text, nothing on success.

use serde::Serialize;

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    message: &'a str,
}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    Exit(i32),
    /// It could not run, or was lost.
    Error(String),
}

/// Go's `%v` of a `[]string`: `[sh -c exit 3]`.
fn go_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The kubelet's (containerd's) message for a non-zero exit.
pub fn exit_message(command: &[String], code: i32) -> String {
    format!(
        "command terminated with non-zero exit code: error executing command {}, exit code {code}",
        go_slice(command)
    )
}

/// The v4/v5 error-stream payload.
pub fn status_json(command: &[String], outcome: &Outcome) -> String {
    let exit_text;
    let error_text;
    let status = match outcome {
        Outcome::Success => Status {
            metadata: Empty {},
            status: "Success",
            message: None,
            reason: None,
            details: None,
            code: None,
        },
        Outcome::Exit(code) => {
            exit_text = (exit_message(command, *code), code.to_string());
            Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(&exit_text.0),
                reason: Some("NonZeroExitCode"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: &exit_text.1,
                    }],
                }),
                code: None,
            }
        }
        Outcome::Error(msg) => {
            // apierrors.NewInternalError.
            error_text = format!("Internal error occurred: {msg}");
            Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(&error_text),
                reason: Some("InternalError"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: msg,
                    }],
                }),
                code: Some(500),
            }
        }
    };
    serde_json::to_string(&status).unwrap_or_default()
}

/// The v1-v3 error-stream payload (None on success).
pub fn status_text(command: &[String], outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Success => None,
        Outcome::Exit(code) => Some(exit_message(command, *code)),
        Outcome::Error(msg) => Some(format!("Internal error occurred: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_status_json() {
        let cmd: Vec<String> = ["sh", "-c", "exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            status_json(&cmd, &Outcome::Success),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            status_json(&cmd, &Outcome::Exit(3)),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            status_json(&cmd, &Outcome::Error("boom".into())),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}"#
        );
        assert_eq!(status_text(&cmd, &Outcome::Success), None);
    }
}
