//! Study grids (`latentlab study plan GRID.toml`) and plans (`plan.jsonl`,
//! which a user may edit): the TOML grid through every check that needs no
//! data (flags, objectives, ranges, duplicates), and the plan's lines
//! through every check `study run` makes before anything trains.
#![no_main]
use latentlab_cli::study::grid::check_without_data;
use latentlab_cli::study::plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = check_without_data(text);
        let _ = Plan::parse(text, std::path::Path::new("study"));
    }
});
