//! Length shaping: DAPO's soft overlong punishment (Yu et al. 2025, "DAPO", eq. 13).
//!
//! With maximum length `L_max` and punishment interval `L_cache`, a response of length `|y|`
//! gets `0` while `|y| ≤ L_max − L_cache`, `((L_max − L_cache) − |y|) / L_cache` (from 0 down to
//! −1) while `|y| ≤ L_max`, and `−1` beyond. Lengths are in whatever unit the caller counts,
//! normally generated tokens; the reward worker does not tokenize, so composition takes the
//! count from its caller.

use serde::{Deserialize, Serialize};

/// The overlong penalty for a response of `len`; see the module doc. `cache_len == 0` makes it a
/// hard cut: 0 up to `max_len`, −1 beyond.
pub fn overlong_penalty(len: usize, max_len: usize, cache_len: usize) -> f64 {
    let cache_len = cache_len.min(max_len);
    let free = max_len - cache_len;
    if len <= free {
        0.0
    } else if len <= max_len {
        -((len - free) as f64) / cache_len as f64
    } else {
        -1.0
    }
}

/// Options of the `overlong` reward component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlongConfig {
    /// `L_max`: the generation limit.
    pub max_len: usize,
    /// `L_cache`: the punishment interval before `max_len`.
    pub cache_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LengthError {
    #[error("overlong `cache_len` ({cache_len}) exceeds `max_len` ({max_len}); make cache_len at most max_len")]
    CacheTooLong { max_len: usize, cache_len: usize },
    #[error("overlong `max_len` is 0; set it to the generation limit in tokens")]
    ZeroMax,
}

impl OverlongConfig {
    pub fn validate(&self) -> Result<(), LengthError> {
        if self.max_len == 0 {
            return Err(LengthError::ZeroMax);
        }
        if self.cache_len > self.max_len {
            return Err(LengthError::CacheTooLong { max_len: self.max_len, cache_len: self.cache_len });
        }
        Ok(())
    }

    pub fn penalty(&self, len: usize) -> f64 {
        overlong_penalty(len, self.max_len, self.cache_len)
    }
}
