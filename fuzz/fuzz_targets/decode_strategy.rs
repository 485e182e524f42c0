//! A request body decoded into a kind's strategy, as every create and update does:
//! `strategy.prepare(body, None)` (create) and `prepare(body, Some(old))` (update). The
//! first byte picks the resource; the rest is the JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_control::resources::REGISTRY;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Some(info) = REGISTRY.get(usize::from(pick) % REGISTRY.len()) else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if let Ok(created) = info.strategy.prepare(&body, None) {
        // The stored object updated with the same body (update-time rules).
        let _ = info.strategy.prepare(&body, Some(&created.object));
        let mut object = created.object;
        let _ = info.strategy.claims(&object);
        let _ = info.strategy.hold_deletion(&mut object);
    }
});
