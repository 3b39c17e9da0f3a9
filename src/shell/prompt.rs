//! The prompt segment, e.g. `gpu:1,5 3h59m`.
//!
//! The shell function `canhazgpu_prompt` (in `shell/init.*`) computes it from the
//! environment; `canhazgpu prompt` computes the same from the store. Both follow the
//! rules here, and a test checks that they agree.

/// Overrides the format; `{gpus}`, `{count}` and `{left}` are replaced.
pub const FORMAT_VAR: &str = "CANHAZGPU_PROMPT_FORMAT";
pub const DEFAULT_FORMAT: &str = "gpu:{gpus} {left}";

/// Time left, coarse enough to stay short: `3h59m`, `12m`, `40s`, `expired`.
pub fn left(seconds: i64) -> String {
    if seconds >= 3600 {
        format!("{}h{}m", seconds / 3600, seconds % 3600 / 60)
    } else if seconds >= 60 {
        format!("{}m", seconds / 60)
    } else if seconds > 0 {
        format!("{seconds}s")
    } else {
        "expired".to_string()
    }
}

/// The segment for `ids` with `seconds` left (`None`: no expiry known). An empty or
/// unset format means the default.
pub fn segment(format: Option<&str>, ids: &[u32], seconds: Option<i64>) -> String {
    let format = format.filter(|f| !f.is_empty()).unwrap_or(DEFAULT_FORMAT);
    let left = seconds.map_or_else(|| "?".to_string(), left);
    format
        .replace("{gpus}", &crate::gpu_env::id_list(ids))
        .replace("{count}", &ids.len().to_string())
        .replace("{left}", &left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left() {
        assert_eq!(left(4 * 3600), "4h0m");
        assert_eq!(left(3 * 3600 + 59 * 60 + 59), "3h59m");
        assert_eq!(left(3599), "59m");
        assert_eq!(left(60), "1m");
        assert_eq!(left(59), "59s");
        assert_eq!(left(0), "expired");
        assert_eq!(left(-5), "expired");
    }

    #[test]
    fn formats() {
        assert_eq!(segment(None, &[1, 5], Some(14340)), "gpu:1,5 3h59m");
        assert_eq!(segment(Some(""), &[1], None), "gpu:1 ?");
        assert_eq!(
            segment(Some("[{count} GPU: {gpus}, {left}]"), &[0, 2], Some(90)),
            "[2 GPU: 0,2, 1m]"
        );
    }
}
