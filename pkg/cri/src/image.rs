//! The ImageService calls: listing, status, pulls, removal and the image filesystem.

use crate::client::{CriClient, call, request};
use crate::error::{Error, Result};
use crate::proto::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec,
    ImageStatusRequest, ImageStatusResponse, ListImagesRequest, PodSandboxConfig, PullImageRequest,
    RemoveImageRequest,
};

/// An image spec naming `image` (a reference or an image id).
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

impl CriClient {
    /// The images matching `filter` (all with `None`).
    pub async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let t = Some(self.options.request_timeout);
        let req = ListImagesRequest { filter };
        Ok(call(
            "ListImages",
            t,
            self.image.clone().list_images(request(req, t)),
        )
        .await?
        .images)
    }

    /// The image `image` names, or `None` when the runtime does not have it.
    pub async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let t = Some(self.options.request_timeout);
        let req = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let mut img = self.image.clone();
        let fut = img.image_status(request(req, t));
        Ok(call("ImageStatus", t, fut).await?.image)
    }

    /// The verbose status of the image `image` names: the image (None when the runtime
    /// does not have it) and the runtime's extra `info` (containerd: the OCI image config
    /// as JSON under "info").
    pub async fn image_status_verbose(&self, image: &str) -> Result<ImageStatusResponse> {
        let t = Some(self.options.request_timeout);
        let req = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: true,
        };
        let mut img = self.image.clone();
        let fut = img.image_status(request(req, t));
        call("ImageStatus", t, fut).await
    }

    /// Pull `image` with optional registry credentials, in the context of a sandbox when
    /// given; the reference of the pulled image (its id or digest).
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let op = "PullImage";
        let t = self.options.pull_timeout;
        let req = PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config,
        };
        let resp = call(op, t, self.image.clone().pull_image(request(req, t))).await?;
        if resp.image_ref.is_empty() {
            return Err(Error::MissingField {
                op,
                field: "image_ref",
            });
        }
        Ok(resp.image_ref)
    }

    /// Remove an image (idempotent).
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let t = Some(self.options.request_timeout);
        let req = RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        call(
            "RemoveImage",
            t,
            self.image.clone().remove_image(request(req, t)),
        )
        .await?;
        Ok(())
    }

    /// The usage of the filesystems the runtime keeps images (and containers) on.
    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        let t = Some(self.options.request_timeout);
        let req = request(ImageFsInfoRequest {}, t);
        call("ImageFsInfo", t, self.image.clone().image_fs_info(req)).await
    }
}
