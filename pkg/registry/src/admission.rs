//! The admission hook of every write: a chain (built in `minik-admission`) that may change
//! an object before it is validated and stored (mutating) and may refuse it after (validating),
//! as kube-apiserver's admission plugins do. Writes that name no user (the server's own
//! bookkeeping) are not admitted.

use std::any::Any;

use minik_api::ResourceInfo;
use serde_json::Value;

use crate::{Registry, Result};

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The same user in `system:authenticated`.
    pub fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

tokio::task_local! {
    /// The audit annotations of the request being served (set by the audit log's filter).
    static AUDIT_ANNOTATIONS: std::cell::RefCell<Vec<(String, String)>>;
}

/// Add an annotation to the current request's audit event (nothing without an audit log).
pub fn annotate(key: &str, value: String) {
    let _ = AUDIT_ANNOTATIONS.try_with(|a| a.borrow_mut().push((key.to_string(), value)));
}

/// Run `f` collecting the audit annotations added while it runs.
pub async fn collect_annotations<F: std::future::Future>(
    f: F,
) -> (F::Output, Vec<(String, String)>) {
    AUDIT_ANNOTATIONS
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let out = f.await;
            let annotations = AUDIT_ANNOTATIONS.with(|a| a.take());
            (out, annotations)
        })
        .await
}

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// As admission rules and AdmissionReviews spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One write, as admission sees it.
pub struct Attributes<'a> {
    pub operation: Operation,
    pub info: &'a ResourceInfo,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The object before the write (updates and deletes).
    pub old: Option<&'a Value>,
}

impl Attributes<'_> {
    /// The resource, `plural` or `plural/subresource`.
    pub fn resource(&self) -> String {
        match self.subresource {
            Some(s) => format!("{}/{s}", self.info.plural),
            None => self.info.plural.to_string(),
        }
    }
}

/// What validation let through: warnings, and what must be held until the write is done
/// (a quota's lock).
#[derive(Default)]
pub struct Verdict {
    pub warnings: Vec<String>,
    pub hold: Vec<Box<dyn Any + Send + Sync>>,
}

/// An admission chain.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// Change `obj` (for a delete, the object being deleted); return warnings.
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>>;

    /// Accept or refuse `obj` as it will be stored (for a delete, the object being deleted).
    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict>;
}

impl Registry {
    /// Use `chain` for every write that names its user.
    pub fn with_admission(mut self, chain: std::sync::Arc<dyn Admission>) -> Self {
        self.admission = Some(chain);
        self
    }

    pub(crate) async fn admit_mutate(
        &self,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>> {
        match &self.admission {
            Some(chain) => chain.mutate(self, attrs, obj).await,
            None => Ok(Vec::new()),
        }
    }

    pub(crate) async fn admit_validate(
        &self,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        match &self.admission {
            Some(chain) => chain.validate(self, attrs, obj).await,
            None => Ok(Verdict::default()),
        }
    }

    /// Validating admission of `obj`: its warnings join `warnings`; what it returns is held
    /// until the write is done.
    pub(crate) async fn admit(
        &self,
        attrs: Option<&Attributes<'_>>,
        obj: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Box<dyn std::any::Any + Send + Sync>>> {
        let Some(a) = attrs else {
            return Ok(Vec::new());
        };
        let Verdict { warnings: w, hold } = self.admit_validate(a, obj).await?;
        warnings.extend(w);
        Ok(hold)
    }

    /// Validating admission of a subresource create (pods/binding, pods/eviction), whose
    /// object is the request body (a Binding, an Eviction).
    pub async fn admit_subresource_create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        sub: &str,
        body: &Value,
        params: &crate::WriteParams,
    ) -> Result<()> {
        let Some(user) = &params.user else {
            return Ok(());
        };
        let attrs = Attributes {
            operation: Operation::Create,
            info,
            subresource: Some(sub),
            namespace: namespace.filter(|_| info.namespaced),
            name,
            user,
            dry_run: params.dry_run,
            old: None,
        };
        self.admit(Some(&attrs), body, &mut Vec::new())
            .await
            .map(drop)
    }

    /// `obj` re-read as its resource's type after a mutation (unknown fields dropped).
    pub fn retype(&self, info: &ResourceInfo, obj: &Value) -> Result<Value> {
        if info.custom {
            return self.custom_view(info, obj, None);
        }
        (info.typed)(obj).map_err(|e| {
            crate::ApiError::BadRequest(format!(
                "the mutated {} is not a valid {}: {e}",
                info.kind, info.kind
            ))
        })
    }
}
