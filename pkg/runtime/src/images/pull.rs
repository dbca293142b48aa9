//! Pulling an image from a registry (OCI distribution API, through `oci-client` over rustls):
//! resolve the reference to a manifest (an index resolved to this host's platform), fetch the
//! config and the layers not in the store yet, each verified against its digest, then unpack
//! and record the image. Endpoints come from registries.yaml (see `registries`); each is tried
//! in turn and the error says what every one of them answered.

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference as OciReference};

use super::commit::{Committed, NewImage, names};
use super::content::{check_digest, sha256};
use super::meta::LayerRecord;
use super::oci::{self, ConfigFile, Document};
use super::reference::Reference;
use super::registries::{Endpoint, Registries};
use super::{ImageStore, Progress};
use crate::types::{Auth, Error, Image, Result};

/// Attempts when another process removes shared content while pulling.
const ATTEMPTS: usize = 3;

impl ImageStore {
    pub(crate) async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&Auth>,
        registries: &Registries,
    ) -> Result<Image> {
        let r = Reference::parse(reference).map_err(|e| Error::Pull {
            image: reference.into(),
            message: e.to_string(),
        })?;
        let image = r.to_string();
        let fail = |message: String| Error::Pull {
            image: image.clone(),
            message,
        };
        // reqwest is built without a default crypto provider: use ring, as the rest of minik.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut errors = Vec::new();
        for ep in registries.endpoints(&r.domain, &r.path, auth) {
            for _ in 0..ATTEMPTS {
                match self.pull_from(&ep, &r).await {
                    Ok(Committed::Done(img)) => {
                        tracing::info!(%image, endpoint = %ep.url(), id = %img.id, "pulled an image");
                        return Ok(img);
                    }
                    Ok(Committed::ContentGone(what)) => {
                        tracing::info!(%image, %what, "content removed concurrently; pulling again");
                        errors.push(format!("{}: {what} kept being removed", ep.url()));
                    }
                    Err(e) => {
                        tracing::debug!(%image, endpoint = %ep.url(), error = %e, "pull from an endpoint failed");
                        errors.push(format!("{}: {e}", ep.url()));
                        break;
                    }
                }
            }
        }
        Err(fail(errors.join("; ")))
    }

    async fn pull_from(&self, ep: &Endpoint, r: &Reference) -> Result<Committed> {
        let client = Client::try_from(ClientConfig {
            protocol: if ep.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: ep.insecure_skip_verify,
            ..Default::default()
        })
        .map_err(|e| Error::Failed(format!("making an HTTP client: {}", chain(&e))))?;
        let auth = match &ep.auth {
            Some(a) => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let oref = match (&r.digest, &r.tag) {
            (Some(d), _) => {
                OciReference::with_digest(ep.host.clone(), ep.repository.clone(), d.clone())
            }
            (None, tag) => OciReference::with_tag(
                ep.host.clone(),
                ep.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let (bytes, top_digest) = self
            .fetch_manifest(&client, &oref, &auth, r.digest.as_deref())
            .await?;
        let (manifest_digest, manifest, index) = match oci::parse_document(&bytes)? {
            Document::Manifest(m) => (top_digest.clone(), m, None),
            Document::Index(ix) => {
                let d = oci::choose_platform(&ix).ok_or_else(|| {
                    Error::Failed(format!(
                        "no image for {} in the index {top_digest}",
                        oci::host_platform_name()
                    ))
                })?;
                self.content.write(&bytes, Some(&top_digest))?;
                let mref = oref.clone_with_digest(d.digest.clone());
                let mbytes = self
                    .fetch_manifest(&client, &mref, &auth, Some(&d.digest))
                    .await?
                    .0;
                match oci::parse_document(&mbytes)? {
                    Document::Manifest(m) => {
                        self.content.write(&mbytes, Some(&d.digest))?;
                        (d.digest.clone(), m, Some(top_digest.clone()))
                    }
                    Document::Index(_) => {
                        return Err(Error::Failed(format!(
                            "{} is an index inside an index",
                            d.digest
                        )));
                    }
                }
            }
        };
        if index.is_none() {
            self.content.write(&bytes, Some(&manifest_digest))?;
        }
        self.fetch_blob(
            &client,
            &oref,
            &auth,
            &manifest.config.digest,
            manifest.config.size,
        )
        .await?;
        let config = ConfigFile::parse(&self.content.read(&manifest.config.digest)?)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::Failed(format!(
                "the manifest has {} layers, the config {} diff ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            self.fetch_blob(&client, &oref, &auth, &l.digest, l.size)
                .await?;
            layers.push(LayerRecord {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: diff_id.clone(),
            });
        }
        let (repo_tags, repo_digests) = names(std::slice::from_ref(r), Some(&top_digest));
        let new = NewImage {
            manifest: manifest_digest,
            index,
            config: manifest.config.digest.clone(),
            layers,
            repo_tags,
            repo_digests,
        };
        // Unpacking and the locked commit block: off the async threads.
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.commit(&new))
            .await
            .map_err(|e| Error::Failed(format!("unpacking task failed: {e}")))?
    }

    /// A manifest's bytes and digest, checked against `expected` when the reference or the
    /// index named one.
    async fn fetch_manifest(
        &self,
        client: &Client,
        oref: &OciReference,
        auth: &RegistryAuth,
        expected: Option<&str>,
    ) -> Result<(Vec<u8>, String)> {
        let (bytes, _) = client
            .pull_manifest_raw(oref, auth, &oci::MANIFEST_TYPES)
            .await
            .map_err(|e| Error::Failed(format!("fetching the manifest: {}", chain(&e))))?;
        let digest = sha256(&bytes);
        if let Some(want) = expected
            && want != digest
        {
            return Err(Error::Failed(format!(
                "the manifest's content is {digest}, not the {want} asked for"
            )));
        }
        Ok((bytes.to_vec(), digest))
    }

    /// Fetch a blob into the store unless it is there: streamed to a blocking writer that
    /// hashes it and commits it only when the digest matches.
    async fn fetch_blob(
        &self,
        client: &Client,
        oref: &OciReference,
        auth: &RegistryAuth,
        digest: &str,
        size: u64,
    ) -> Result<()> {
        check_digest(digest)?;
        if self.content.exists(digest) {
            return Ok(());
        }
        if let Some(p) = &self.progress {
            p(Progress::Fetching {
                digest: digest.into(),
                size,
            });
        }
        client
            .store_auth_if_needed(oref.resolve_registry(), auth)
            .await;
        let mut stream = client
            .pull_blob_stream(oref, digest)
            .await
            .map_err(|e| Error::Failed(format!("fetching blob {digest}: {}", chain(&e))))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<bytes::Bytes>>(8);
        let content = self.content.clone();
        let want = digest.to_string();
        let writer = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut w = content.writer()?;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Some(bytes) => w.write_all(&bytes).map_err(Error::io("writing a blob"))?,
                    None => return w.commit(Some(&want)).map(|_| ()),
                }
            }
            Err(Error::Failed("the download stopped".into()))
        });
        use futures::StreamExt;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    if tx.send(Some(bytes)).await.is_err() {
                        break;
                    }
                    if let Some(p) = &self.progress {
                        p(Progress::Fetched { bytes: n });
                    }
                }
                Err(e) => {
                    failure = Some(format!("fetching blob {digest}: {}", chain(&e)));
                    break;
                }
            }
        }
        if failure.is_none() {
            let _ = tx.send(None).await;
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| Error::Failed(format!("blob writer failed: {e}")))?;
        match failure {
            Some(f) => Err(Error::Failed(f)),
            None => written.map_err(|e| Error::Failed(format!("blob {digest}: {e}"))),
        }
    }
}

/// An error with its causes ("error sending request: connection refused"): reqwest's
/// message alone does not say why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}
