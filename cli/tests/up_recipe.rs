//! The README's main job, short: `r1ctl up --quick` runs every stage of the recipe (prepare,
//! R1-Zero, cold start + RL, rejection sampling and the student runs, the report) through
//! the real coordinator, actors, reward workers and learner, on a tiny model. It checks the
//! plumbing end to end, not the learning numbers (those are in docs/reproduction.md).
//! R1-Zero and the student's runs go through a second `r1ctl up` process (the side process)
//! with its own coordinator in `recipe-quick/side/`. A second `up --quick` on the same folder
//! reuses every finished run, in both processes, and so does one on a copy of the folder.

use std::process::Command;

fn up(data: &std::path::Path, port: u16) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_r1ctl"))
        .args(["up", "--quick", "--data-dir", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("R1_LOG")
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn quick_recipe_runs_every_stage_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r1-data");
    let out = up(&data, free_port());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "up --quick failed:\n{stderr}");
    for stage in ["1/5 prepare", "2/5 R1-Zero", "3/5 R1", "4/5 distillation", "5/5 report"] {
        assert!(stderr.contains(stage), "stage `{stage}` missing:\n{stderr}");
    }
    let report = data.join("recipe-quick/report");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for row in [
        "| base |",
        "| R1-Zero (GRPO) |",
        "| cold start (SFT) |",
        "| R1 (cold start + GRPO) |",
        "| student base |",
        "| student + RL |",
    ] {
        assert!(md.contains(row), "report row {row} missing:\n{md}");
    }
    assert!(stdout.contains("report.md"), "{stdout}");
    for part in ["## By family and level", "| long_chain 3 |", "On long_chain level 3"] {
        assert!(md.contains(part), "report part {part} missing:\n{md}");
    }
    let png = std::fs::read(report.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        2000,
        "four panels, the last the hard cell's length"
    );
    // Every run completed and left a loadable final checkpoint and its metrics: cold start and
    // R1 here, R1-Zero and the student's RL in the side process's folder.
    let side = data.join("recipe-quick/side");
    let side_log = std::fs::read_to_string(side.join("up.log")).unwrap();
    for name in ["`student-rl`", "`r1-zero`"] {
        assert!(side_log.contains(name), "the side process ran {name}:\n{side_log}");
    }
    let mut runs: Vec<_> = std::fs::read_dir(data.join("runs")).unwrap().flatten().collect();
    assert_eq!(runs.len(), 2, "cold start and R1 in the main folder");
    runs.extend(std::fs::read_dir(side.join("runs")).unwrap().flatten());
    assert_eq!(runs.len(), 4, "R1-Zero and the student's RL in the side folder");
    for r in &runs {
        let lines = std::fs::read_to_string(r.path().join("metrics.jsonl")).unwrap();
        assert!(lines.lines().count() >= 2, "{}: {lines}", r.path().display());
    }

    // Again on the same folder: nothing is trained twice.
    let again = up(&data, free_port());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second up --quick failed:\n{stderr}");
    assert!(stderr.matches("already completed").count() >= 2, "finished runs are reused:\n{stderr}");
    let side_log = std::fs::read_to_string(side.join("up.log")).unwrap();
    assert_eq!(side_log.matches("already completed").count(), 2, "and the side process's:\n{side_log}");
    assert!(stderr.contains("up to date, reused"), "prepared stages are reused:\n{stderr}");

    // A copy of the folder, the original moved out of reach: both processes find their runs
    // again (the side process's specs name files above its own data folder).
    let copy = dir.path().join("copy");
    assert!(Command::new("cp").arg("-a").arg(&data).arg(&copy).status().unwrap().success());
    std::fs::rename(&data, dir.path().join("away")).unwrap();
    let moved = up(&copy, free_port());
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(moved.status.success(), "up --quick in the copy failed:\n{stderr}");
    assert!(stderr.contains("was made in another data folder"), "the main process adopts its runs:\n{stderr}");
    let side = copy.join("recipe-quick/side");
    let side_log = std::fs::read_to_string(side.join("up.log")).unwrap();
    for name in ["`student-rl`", "`r1-zero`"] {
        assert!(
            side_log.contains(&format!("{name} was made in another data folder")),
            "the side process adopts {name}:\n{side_log}"
        );
    }
    assert_eq!(side_log.matches("already completed").count(), 2, "and trains nothing again:\n{side_log}");
    assert_eq!(std::fs::read_dir(side.join("runs")).unwrap().count(), 2, "no new run in the side folder");
}
