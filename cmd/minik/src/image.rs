//! `minik image`: the node's image store (<data-dir>/agent/store, shared with a running
//! server) from the command line. The work is minik_runtime::images'.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use minik_runtime::images::{self, Progress};
use minik_runtime::{Auth, ImageStore, Registries};

use crate::cli::ImageCommand;

pub fn run(command: ImageCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::Import { dir, files } => {
            // Refuse before touching the store.
            for f in &files {
                if !f.is_file() {
                    bail!("{}: no such file", f.display());
                }
            }
            let bar = progress_bar();
            let store = open(&dir.data_dir)?.with_progress(progress_fn(&bar));
            for f in &files {
                bar.set_message(format!("importing {}", f.display()));
                let imported = store
                    .import(f)
                    .with_context(|| format!("importing {}", f.display()))?;
                for i in imported {
                    bar.suspend(|| println!("imported {} {}", i.id, names(&i)));
                }
            }
            bar.finish_and_clear();
        }
        ImageCommand::Ls { dir, quiet } => {
            let root = images::store_root(&dir.data_dir);
            let list = if root.exists() {
                open(&dir.data_dir)?.list()?
            } else {
                Vec::new()
            };
            if quiet {
                for i in &list {
                    println!("{}", i.id);
                }
            } else {
                print!("{}", images::image_table(&list));
            }
        }
        ImageCommand::Pull {
            dir,
            image,
            registries,
            creds,
        } => {
            let registries = Registries::load(&registries)?;
            let auth = match creds {
                Some(c) => match c.split_once(':') {
                    Some((u, p)) if !u.is_empty() => Some(Auth {
                        username: u.into(),
                        password: p.into(),
                    }),
                    _ => bail!("--creds must be USER:PASSWORD"),
                },
                None => None,
            };
            let bar = progress_bar();
            bar.set_message(format!("pulling {}", images::normalize(&image)));
            let store = open(&dir.data_dir)?.with_progress(progress_fn(&bar));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let pulled = rt.block_on(store.pull(&image, auth.as_ref(), &registries));
            bar.finish_and_clear();
            let i = pulled?;
            println!("pulled {} {}", i.id, names(&i));
        }
        ImageCommand::Rm { dir, images: refs } => {
            let store = open(&dir.data_dir)?;
            let mut failed = false;
            for r in &refs {
                // Say what went: the reference, or the image's id when given an id.
                let normalized = images::normalize(r);
                let shown = match store.get(r) {
                    Some(i)
                        if i.repo_tags.contains(&normalized)
                            || i.repo_digests.contains(&normalized) =>
                    {
                        normalized
                    }
                    Some(i) => i.id,
                    None => r.clone(),
                };
                match store.remove(r) {
                    Ok(()) => println!("Deleted: {shown}"),
                    Err(e) => {
                        eprintln!("minik: error: removing {r}: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(data_dir: &Path) -> anyhow::Result<ImageStore> {
    let root = images::store_root(data_dir);
    ImageStore::open(&root).with_context(|| format!("opening the image store {}", root.display()))
}

fn names(i: &minik_runtime::Image) -> String {
    if i.repo_tags.is_empty() {
        "(untagged)".into()
    } else {
        i.repo_tags.join(", ")
    }
}

/// A byte counter on stderr (drawn only on a terminal).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress_fn(bar: &ProgressBar) -> images::ProgressFn {
    let bar = bar.clone();
    Arc::new(move |p| match p {
        Progress::Fetching { size, .. } => bar.inc_length(size),
        Progress::Fetched { bytes } => bar.inc(bytes),
        Progress::Unpacking { digest } => {
            let short: String = digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            bar.set_message(format!("unpacking {short}"));
        }
    })
}
