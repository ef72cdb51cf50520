//! Job and schedule ids. A job id is Metronome's `pathType`: names separated by dots, each of
//! lowercase letters, digits and dashes, not starting or ending with a dash (dashes may repeat
//! inside a name since Metronome's "Allow consecutive hyphens in the JobSpec id").

/// Longest job id. Metronome sets none; cairn runs each run's task as the Marathon app
/// `/metronome/<job id>/<run id>` ([`crate::app_id`]), which `cairn_marathon` bounds at
/// [`cairn_marathon::MAX_ID_LEN`] (200) because a task id names its sandbox directory:
/// 160 leaves room for the 11 characters of `/metronome/`, a `/` and a run id of up to 28
/// (ours are 19: [`crate::new_run_id`]).
pub const MAX_JOB_ID_LEN: usize = 160;

/// Why `id` is not a job id, if it is not.
pub fn check_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a job needs an id".into());
    }
    if id.len() > MAX_JOB_ID_LEN {
        return Err(format!(
            "job id is {} characters long; at most {MAX_JOB_ID_LEN}",
            id.len()
        ));
    }
    if !id.split('.').all(valid_name) {
        return Err(format!(
            "{id:?} is not a valid job id: names separated by dots, each of lowercase letters \
             (a-z), digits (0-9) and dashes (-), not beginning or ending with a dash"
        ));
    }
    Ok(())
}

/// Why `id` is not a schedule id, if it is not: one name of the job id's kind (no dots).
pub fn check_schedule_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a schedule needs an id".into());
    }
    if id.len() > MAX_JOB_ID_LEN || !valid_name(id) {
        return Err(format!(
            "{id:?} is not a valid schedule id: lowercase letters (a-z), digits (0-9) and \
             dashes (-), not beginning or ending with a dash, at most {MAX_JOB_ID_LEN} characters"
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
