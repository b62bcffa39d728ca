//! Signal windows of rate and forecast rules: per series, the samples a rule needs
//! to turn values into a rate of change or a time until a target. Pure arithmetic on
//! (timestamp, value) points; bounded memory per series.

use std::collections::VecDeque;

/// Per-series memory of rate and forecast rules.
#[derive(Default)]
pub(super) struct Points {
    pts: VecDeque<(i64, f64)>,
}

/// Seconds reported by a forecast that never reaches its target.
pub(crate) const NEVER_SECS: f64 = 1e12;

impl Points {
    pub(super) fn rate(&mut self, at: i64, v: f64, per_secs: f64) -> Option<f64> {
        let prev = self.pts.back().copied();
        self.pts.clear();
        self.pts.push_back((at, v));
        let (pt, pv) = prev?;
        (at > pt).then(|| (v - pv) / ((at - pt) as f64 / 1000.0) * per_secs)
    }

    /// Seconds until a least-squares line over the window reaches `target`.
    pub(super) fn forecast(&mut self, at: i64, v: f64, window_ms: i64, target: f64) -> Option<f64> {
        match self.pts.back() {
            Some(&(t, _)) if at <= t => return None,
            // Keep at most ~240 points per window: enough for a fit, bounded memory.
            Some(&(t, _)) if at - t < window_ms / 240 => {
                if let Some(last) = self.pts.back_mut() {
                    *last = (at, v);
                }
            }
            _ => self.pts.push_back((at, v)),
        }
        while self.pts.front().is_some_and(|&(t, _)| at - t > window_ms) {
            self.pts.pop_front();
        }
        let n = self.pts.len();
        let first = self.pts.front()?.0;
        // A fit needs a few points spanning a tenth of the window.
        if n < 3 || at - first < window_ms / 10 {
            return None;
        }
        let xs = self.pts.iter().map(|&(t, _)| (t - first) as f64 / 1000.0);
        let nf = n as f64;
        let mx = xs.clone().sum::<f64>() / nf;
        let my = self.pts.iter().map(|&(_, y)| y).sum::<f64>() / nf;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, &(_, y)) in xs.zip(self.pts.iter()) {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let now_x = (at - first) as f64 / 1000.0;
        let fit_now = my + slope * (now_x - mx);
        let gap = target - fit_now;
        // Moving away from the target (or already past it: the threshold rules speak
        // for a full disk) never reaches it.
        Some(if slope != 0.0 && gap / slope >= 0.0 {
            gap / slope
        } else {
            NEVER_SECS
        })
    }
}
