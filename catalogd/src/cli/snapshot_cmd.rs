//! `catalogd snapshot save|restore|inspect`: backups of the whole catalog, as `consul snapshot`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use cairn_client::CatalogClient;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save the whole catalog to FILE (written atomically, mode 0600: it holds every KV value)
    Save { file: PathBuf },
    /// Replace the server's whole state with FILE's
    Restore { file: PathBuf },
    /// Print a snapshot file's metadata (reads the file only)
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &CatalogClient, cmd: SnapshotCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        SnapshotCommand::Save { file } => {
            let (archive, _) = client.snapshot_save().await.context("saving a snapshot")?;
            // Verify before it replaces anything: a damaged download must not become a backup.
            let (meta, _) = crate::snapshot::restore(&archive)
                .context("the server's snapshot does not verify")?;
            cairn_cli::replace_file(&file, &archive, Some(0o600))
                .with_context(|| format!("writing {}", file.display()))?;
            writeln!(out, "Saved and verified snapshot to index {}", meta.index)?;
        }
        SnapshotCommand::Restore { file } => {
            let archive =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            client
                .snapshot_restore(archive)
                .await
                .context("restoring the snapshot")?;
            writeln!(out, "Restored snapshot")?;
        }
        SnapshotCommand::Inspect { file, json } => {
            let archive =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (meta, state) = crate::snapshot::restore(&archive)
                .with_context(|| format!("{} is not a readable snapshot", file.display()))?;
            if json {
                serde_json::to_writer(&mut out, &meta)?;
                writeln!(out)?;
            } else {
                writeln!(out, " ID           {}", meta.id)?;
                writeln!(out, " Size         {}", meta.size)?;
                writeln!(out, " Index        {}", meta.index)?;
                writeln!(out, " Term         {}", meta.term)?;
                writeln!(out, " Version      {}", meta.version)?;
                writeln!(out)?;
                writeln!(out, " Nodes        {}", state.nodes.len())?;
                writeln!(out, " Services     {}", state.services.len())?;
                writeln!(out, " Checks       {}", state.checks.len())?;
                writeln!(out, " KV entries   {}", state.kv.len())?;
                writeln!(out, " Sessions     {}", state.sessions.len())?;
            }
        }
    }
    Ok(())
}
