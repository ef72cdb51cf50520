//! Runs and history as Metronome renders them (examples/run.json), and run ids.

use cairn_metronome::{
    JobHistory, JobRun, JobRunInfo, JobRunStatus, JobRunTask, TaskStatus, format_time, new_run_id,
    parse_time,
};
use serde_json::json;

const CREATED: u64 = 1_468_587_779_735; // 2016-07-15T13:02:59.735Z

#[test]
fn a_run_is_written_as_metronome_writes_it() {
    // examples/run.json
    let example = json!({"completedAt": null, "createdAt": "2016-07-15T13:02:59.735+0000",
        "id": "20160715130259A34HX", "jobId": "prod", "status": "STARTING", "tasks": []});
    let run = JobRun {
        id: "20160715130259A34HX".into(),
        job_id: "prod".into(),
        status: JobRunStatus::Starting,
        created_at: CREATED,
        completed_at: None,
        tasks: vec![],
    };
    assert_eq!(serde_json::to_value(&run).unwrap(), example);
    assert_eq!(serde_json::from_value::<JobRun>(example).unwrap(), run);
}

#[test]
fn tasks_and_history() {
    let task = JobRunTask {
        id: "metronome_prod.20160715130259a34hx.6f2b".into(),
        started_at: CREATED,
        completed_at: None,
        status: TaskStatus::Running,
    };
    // A task's unset completedAt is left out (Play's Json.format), a run's is null.
    assert_eq!(
        serde_json::to_value(&task).unwrap(),
        json!({"id": "metronome_prod.20160715130259a34hx.6f2b",
               "startedAt": "2016-07-15T13:02:59.735+0000", "status": "TASK_RUNNING"})
    );
    assert_eq!(
        serde_json::to_value(JobHistory::default()).unwrap(),
        json!({"successCount": 0, "failureCount": 0, "lastSuccessAt": null, "lastFailureAt": null,
               "successfulFinishedRuns": [], "failedFinishedRuns": []})
    );
    let history = JobHistory {
        success_count: 1,
        failure_count: 0,
        last_success_at: Some(CREATED + 1000),
        last_failure_at: None,
        successful_finished_runs: vec![JobRunInfo {
            id: "20160715130259a34hx".into(),
            created_at: CREATED,
            finished_at: CREATED + 1000,
            tasks: vec![task.id.clone()],
        }],
        failed_finished_runs: vec![],
    };
    let out = serde_json::to_value(&history).unwrap();
    assert_eq!(
        out["successfulFinishedRuns"][0]["finishedAt"],
        "2016-07-15T13:03:00.735+0000"
    );
    assert_eq!(serde_json::from_value::<JobHistory>(out).unwrap(), history);
    assert_eq!(
        serde_json::to_value(history.summary()).unwrap(),
        json!({"successCount": 1, "failureCount": 0,
               "lastSuccessAt": "2016-07-15T13:03:00.735+0000", "lastFailureAt": null})
    );
    assert_eq!(
        TaskStatus::from(cairn_marathon::TaskState::Killing),
        TaskStatus::Running
    );
    assert_eq!(
        TaskStatus::from(cairn_marathon::TaskState::Lost),
        TaskStatus::Failed
    );
    assert!(JobRunStatus::Failed.is_finished() && !JobRunStatus::Active.is_finished());
}

#[test]
fn times() {
    assert_eq!(format_time(CREATED), "2016-07-15T13:02:59.735+0000");
    assert_eq!(format_time(0), "1970-01-01T00:00:00.000+0000");
    assert_eq!(parse_time("2016-07-15T13:02:59.735+0000"), Some(CREATED));
    assert_eq!(parse_time("2016-07-15T15:02:59.735+0200"), Some(CREATED));
    assert_eq!(parse_time("2016-07-15T13:02:59.735Z"), Some(CREATED));
    assert_eq!(parse_time("yesterday"), None);
}

#[test]
fn run_ids_have_metronomes_form() {
    let now: jiff::Timestamp = "2016-07-15T13:02:59.735Z".parse().unwrap();
    let id = new_run_id(now, "a34hx");
    assert_eq!(id, "20160715130259a34hx");
    // Metronome's: 14 digits of the time, 5 random alphanumerics (run_list.json's ids).
    assert_eq!(id.len(), "20160715130259A34HX".len());
    assert!(id[..14].bytes().all(|b| b.is_ascii_digit()));
}
