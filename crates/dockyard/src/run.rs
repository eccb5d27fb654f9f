//! `run`: a command in an image, without a daemon (or handed to one).

use std::process::Command;

use dockyard_image::{Image, Manifest, Platform};
use dockyard_run::{Network, RunError, RunOptions, RunOutput, Runtime};

use crate::{Dockyard, Error, Result, WriteOptions};

impl Dockyard {
    /// Run a command in the image at `src` (any transport; from an index,
    /// the one for `platform`, default this host's).
    pub fn run(
        &self,
        src: &str,
        platform: Option<&Platform>,
        opts: &RunOptions,
    ) -> Result<RunOutput> {
        let image = self.open_image(src, platform)?;
        self.run_image(image, src, opts)
    }

    /// Run a command in `image` (named `what` in errors). Its layers are
    /// fetched into the store if they are still in a registry, flattened
    /// once into a cached rootfs, and the command runs there with the
    /// runtime `opts.runtime` names (or the first one present).
    pub fn run_image(&self, image: Image, what: &str, opts: &RunOptions) -> Result<RunOutput> {
        let runtime = dockyard_run::pick_runtime(opts.runtime)?;
        // Before any layer is fetched: binaries of another platform cannot run here.
        if runtime != Runtime::Docker {
            dockyard_run::check_platform(&image, what)?;
        }
        let (local, _hold) = self.fetch_remote_blobs(Manifest::Image(image))?;
        let image = local.into_image(what, None)?;
        if runtime == Runtime::Docker {
            return self.run_in_docker(&image, opts);
        }
        let rootfs = dockyard_run::prepare_rootfs(&image, &self.store_root(), self.progress())?;
        let process = dockyard_run::process_for(&image, what, &rootfs, opts)?;
        Ok(dockyard_run::run_in_rootfs(
            &rootfs, &process, opts, runtime,
        )?)
    }

    /// `docker load` the image (as a docker archive tagged after its
    /// config) and `docker run --rm` it with the same options.
    fn run_in_docker(&self, image: &Image, opts: &RunOptions) -> Result<RunOutput> {
        let tag = format!("dockyard-run:{}", &image.config_digest().hex()[..16]);
        let dir = tempfile::Builder::new()
            .prefix("dockyard-docker-")
            .tempdir()
            .map_err(|e| docker_error("writing the archive", e.to_string()))?;
        let archive = dir.path().join("image.tar");
        let dest = format!("docker-archive:{}:{tag}", archive.display());
        self.write(
            &Manifest::Image(image.clone()),
            &dest,
            &WriteOptions::default(),
        )?;
        let load = Command::new("docker")
            .arg("load")
            .arg("-q")
            .arg("-i")
            .arg(&archive)
            .output()
            .map_err(|e| docker_error("docker load", e.to_string()))?;
        if !load.status.success() {
            return Err(docker_error(
                "docker load",
                String::from_utf8_lossy(&load.stderr).trim().to_string(),
            ));
        }
        let mut c = Command::new("docker");
        c.args(["run", "--rm"]);
        if opts.capture {
            c.arg("-i");
        }
        c.arg(match opts.network {
            Network::None => "--network=none",
            Network::Host => "--network=host",
        });
        for (k, v) in &opts.env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        if let Some(w) = &opts.workdir {
            c.arg("-w").arg(w);
        }
        if let Some(u) = &opts.user {
            c.arg("-u").arg(u);
        }
        for (host, m) in dockyard_run::resolve_mounts(&opts.mounts)? {
            let ro = if m.read_only { ":ro" } else { "" };
            c.arg("-v")
                .arg(format!("{}:{}{ro}", host.display(), m.target));
        }
        // Docker takes one program for --entrypoint: the rest goes before the command.
        let mut args = opts.command.clone();
        if let Some(e) = &opts.entrypoint {
            c.arg("--entrypoint")
                .arg(e.first().map(String::as_str).unwrap_or(""));
            args = e.iter().skip(1).cloned().chain(args).collect();
        }
        c.arg(&tag).args(&args);
        Ok(dockyard_run::run_command(
            &mut c,
            "docker",
            Runtime::Docker,
            opts.capture,
        )?)
    }
}

fn docker_error(step: &'static str, message: String) -> Error {
    Error::Run(RunError::Docker { step, message })
}
