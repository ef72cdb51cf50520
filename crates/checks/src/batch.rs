//! Running many checks at once with a concurrency bound, in one process: results stream out in
//! completion order as they finish, tagged with the check's position in the batch. Must run
//! inside a tokio runtime (each check is a task).

use futures::stream::{self, Stream, StreamExt};

use crate::check::Check;
use crate::context::Context;
use crate::status::CheckResult;

/// Runs every check once, at most `concurrency` at a time; yields `(index, result)` as each
/// finishes.
pub fn run_batch(
    checks: Vec<Check>,
    ctx: Context,
    concurrency: usize,
) -> impl Stream<Item = (usize, CheckResult)> {
    stream::iter(checks.into_iter().enumerate())
        .map(move |(i, check)| {
            let ctx = ctx.clone();
            // A task per check, so a multi-threaded runtime spreads them over every core.
            let task = tokio::spawn(async move { check.run(&ctx).await });
            async move {
                let result = task.await.unwrap_or_else(|e| {
                    CheckResult::new(
                        "CHECK",
                        crate::Status::Unknown,
                        format!("check task failed: {e}"),
                    )
                });
                (i, result)
            }
        })
        .buffer_unordered(concurrency.max(1))
}
