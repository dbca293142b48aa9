//! Errors of the registry, each one a Kubernetes `Status` reason. The API server turns them
//! into `metav1.Status` bodies in one place.

/// One cause of an `Invalid` error: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub message: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
}

/// What a request can fail with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{resource}{group_suffix} \"{name}\" not found", group_suffix = dot(group))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource}{group_suffix} \"{name}\" already exists", group_suffix = dot(group))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {resource}{group_suffix} \"{name}\": {message}", group_suffix = dot(group))]
    Conflict {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    /// Server-side apply found fields another manager owns: 409 with one cause per field.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{kind}{group_suffix} \"{name}\" is invalid: {}", causes_text(causes), group_suffix = dot(group))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    /// 403: admission refused the request.
    #[error("{resource}{group_suffix}{named} is forbidden: {message}", group_suffix = dot(group), named = quoted(name))]
    Forbidden {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    /// A refusal with the code its refuser chose (an admission webhook's Status).
    #[error("{message}")]
    Denied { code: u16, message: String },
    #[error("{0}")]
    BadRequest(String),
    /// 422 without field causes: a patch that cannot be applied.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Gone(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// 429 with the causes in the Status details (an eviction a disruption budget refused).
    #[error("{message}")]
    TooManyRequestsBecause { message: String, causes: Vec<Cause> },
    #[error("{0}")]
    Internal(String),
}

fn dot(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

fn quoted(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" \"{name}\"")
    }
}

fn causes_text(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// HTTP status code and `Status.reason`.
    pub fn code_and_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } => (404, "NotFound"),
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::Forbidden { .. } => (403, "Forbidden"),
            ApiError::Denied { code, .. } => (
                *code,
                match code {
                    400 => "BadRequest",
                    401 => "Unauthorized",
                    403 => "Forbidden",
                    404 => "NotFound",
                    409 => "Conflict",
                    422 => "Invalid",
                    429 => "TooManyRequests",
                    500 => "InternalError",
                    503 => "ServiceUnavailable",
                    _ => "",
                },
            ),
            ApiError::BadRequest(_) => (400, "BadRequest"),
            ApiError::Unprocessable(_) => (422, "Invalid"),
            ApiError::Gone(_) => (410, "Expired"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(_) => (415, "UnsupportedMediaType"),
            ApiError::RequestEntityTooLarge(_) => (413, "RequestEntityTooLarge"),
            ApiError::Timeout(_) => (504, "Timeout"),
            ApiError::TooManyRequests(_) | ApiError::TooManyRequestsBecause { .. } => {
                (429, "TooManyRequests")
            }
            ApiError::Internal(_) => (500, "InternalError"),
        }
    }

    pub fn invalid(info: &minik_api::ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        ApiError::Invalid {
            group: info.group.into(),
            kind: info.kind.into(),
            name: name.into(),
            causes,
        }
    }

    /// A bad field of a request's options (`DeleteOptions`): 422 as kube-apiserver says it.
    pub fn invalid_options(field: &str, message: &str) -> Self {
        ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
            name: String::new(),
            causes: vec![Cause {
                field: field.into(),
                message: message.into(),
                reason: "FieldValueNotSupported".into(),
            }],
        }
    }

    /// 403 for `attrs`' object, as admission plugins refuse.
    pub fn forbidden(info: &minik_api::ResourceInfo, name: &str, message: String) -> Self {
        ApiError::Forbidden {
            group: info.group.into(),
            resource: info.plural.into(),
            name: name.into(),
            message,
        }
    }

    pub fn not_found(info: &minik_api::ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            group: info.group.into(),
            resource: info.plural.into(),
            name: name.into(),
        }
    }

    pub fn conflict(info: &minik_api::ResourceInfo, name: &str) -> Self {
        ApiError::Conflict {
            group: info.group.into(),
            resource: info.plural.into(),
            name: name.into(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }
}

impl From<minik_store::Error> for ApiError {
    fn from(e: minik_store::Error) -> Self {
        match e {
            minik_store::Error::Compacted { requested, .. } => ApiError::Gone(format!(
                "The resourceVersion for the provided list is too old (revision {requested} has been compacted)."
            )),
            minik_store::Error::FutureRevision { requested, current } => ApiError::Timeout(
                format!("Too large resource version: {requested}, current: {current}"),
            ),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
