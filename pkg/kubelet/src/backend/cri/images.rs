//! Images through the CRI ImageService: finding one in the cache by id, tag or digest (as
//! given or normalized, "busybox" being "docker.io/library/busybox:latest"), pulls with
//! credentials, the image config from the verbose status, and removal.

use minik_cri::proto::AuthConfig;
use minik_runtime::{Auth, Error, Image, ImageConfig, Result, normalize};

use super::{Cri, cri_error, info, status};

/// The image of `images` that `reference` names: its id (with or without "sha256:"), one
/// of its tags or digests, as given or normalized.
pub(super) fn find<'a>(images: &'a [Image], reference: &str) -> Option<&'a Image> {
    let reference = reference.trim();
    if reference.is_empty() {
        return None;
    }
    let normalized = normalize(reference);
    let names = |i: &Image| -> bool {
        i.repo_tags
            .iter()
            .chain(&i.repo_digests)
            .any(|n| n == reference || *n == normalized)
    };
    images
        .iter()
        .find(|i| i.id == reference || i.id.strip_prefix("sha256:") == Some(reference))
        .or_else(|| images.iter().find(|i| names(i)))
}

impl Cri {
    /// Pull `reference`, then read the pulled image's status into the cache.
    pub(super) async fn pull_image(&self, reference: &str, auth: Option<&Auth>) -> Result<Image> {
        let auth = auth.map(|a| AuthConfig {
            username: a.username.clone(),
            password: a.password.clone(),
            ..Default::default()
        });
        tracing::debug!(image = reference, "CRI PullImage");
        let pull_error = |message: String| Error::Pull {
            image: reference.to_string(),
            message,
        };
        let image_ref = self
            .client
            .pull_image(reference, auth, None)
            .await
            .map_err(|e| pull_error(e.to_string()))?;
        let pulled = match self.client.image_status(&image_ref).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(pull_error(format!(
                    "the runtime has no image {image_ref} after pulling it"
                )));
            }
            Err(e) => return Err(pull_error(e.to_string())),
        };
        let image = status::image(&pulled);
        tracing::info!(image = reference, id = %image.id, "image pulled");
        self.lock().put_image(image.clone(), pulled.pinned);
        Ok(image)
    }

    /// The config of image `id` (its entrypoint, cmd, env, working dir and user).
    pub(super) async fn config_of(&self, id: &str) -> Result<ImageConfig> {
        tracing::debug!(image = id, "CRI ImageStatus (verbose)");
        let resp = self
            .client
            .image_status_verbose(id)
            .await
            .map_err(|e| cri_error(format!("image {id}"), e))?;
        if resp.image.is_none() {
            return Err(Error::ImageNotFound(id.to_string()));
        }
        Ok(info::image_config(&resp.info))
    }

    /// Remove image `id` (an image already gone is removed).
    pub(super) async fn delete_image(&self, id: &str) -> Result<()> {
        let cached = find(&self.lock().image_list(), id).map(|i| i.id.clone());
        tracing::debug!(image = id, "CRI RemoveImage");
        match self.client.remove_image(id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(cri_error(format!("removing image {id}"), e)),
        }
        tracing::info!(image = id, "image removed");
        if let Some(cached) = cached {
            self.lock().remove_image(&cached);
        }
        Ok(())
    }
}
