//! CPU time of a process (user + system, all threads) from `/proc/<pid>/stat`, to see where the
//! cores went during a phase. Linux only; elsewhere every reading is `None`.

use std::{sync::OnceLock, time::Duration};

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`; 100 when that fails).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// CPU time used so far by process `pid`, or by this process when `pid` is `None`.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat, ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (user + system) as f64 / ticks_per_second as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        let line = "4242 (dash board) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_stat(line, 100), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat("garbage", 100), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        if cfg!(target_os = "linux") {
            assert!(cpu_time(None).is_some());
        }
    }
}
