//! The watch cache's state without I/O or locks: the objects, a window of recent events,
//! and the transitions a feed drives (a fresh list, one change, a progress notification).
//! Every transition returns the events it produced, for the owner to fan out.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use super::{Event, EventType, Snapshot, WatchError};
use crate::store::CachedObject;

/// Events kept for watchers that resume from an older resourceVersion.
pub const HISTORY: usize = 10_000;

/// Objects, recent events and revisions of one resource.
#[derive(Default)]
pub struct CacheState {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<Event>>,
    /// Highest revision reflected in `objects`.
    revision: i64,
    /// Watchers may resume from any revision ≥ this one.
    oldest: i64,
    synced: bool,
    /// Most events kept in `history`.
    capacity: usize,
    /// Transitions that changed the objects (lists and events): a cheap "has anything
    /// changed since" for consumers that derive state from the whole set.
    generation: u64,
}

impl CacheState {
    /// An empty, unsynced state keeping `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// True once a first list has been applied.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The highest revision reflected.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// One object by full key.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.objects.get(key).cloned()
    }

    /// Every object whose key starts with `prefix`, and the revision.
    pub fn snapshot(&self, prefix: &str) -> Snapshot {
        let objects = self
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| Arc::clone(v))
            .collect();
        Snapshot {
            objects,
            revision: self.revision,
        }
    }

    /// The events after `requested`, or Expired if the window no longer reaches back.
    pub fn events_after(&self, requested: i64) -> Result<Vec<Arc<Event>>, WatchError> {
        if requested < self.oldest {
            return Err(WatchError::Expired {
                requested,
                oldest: self.oldest,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|e| e.revision > requested)
            .cloned()
            .collect())
    }

    /// How many times the objects changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn record(&mut self, event: Event, out: &mut Vec<Arc<Event>>) {
        self.generation += 1;
        let event = Arc::new(event);
        self.revision = self.revision.max(event.revision);
        self.history.push_back(Arc::clone(&event));
        while self.history.len() > self.capacity {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest = dropped.revision;
            }
        }
        out.push(event);
    }

    /// Replace the content with a fresh list at `revision`; after the first list, the
    /// differences come out as events, so watchers miss nothing across a relist.
    pub fn reset(
        &mut self,
        objects: BTreeMap<String, Arc<CachedObject>>,
        revision: i64,
    ) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        if self.synced {
            let old = std::mem::take(&mut self.objects);
            for (key, object) in &objects {
                let (kind, previous) = match old.get(key) {
                    None => (EventType::Added, None),
                    Some(prev) if prev.revision != object.revision => {
                        (EventType::Modified, Some(Arc::clone(prev)))
                    }
                    Some(_) => continue,
                };
                self.record(
                    Event {
                        kind,
                        object: Arc::clone(object),
                        previous,
                        revision,
                    },
                    &mut out,
                );
            }
            for (key, prev) in &old {
                if !objects.contains_key(key) {
                    self.record(
                        Event {
                            kind: EventType::Deleted,
                            object: Arc::clone(prev),
                            previous: Some(Arc::clone(prev)),
                            revision,
                        },
                        &mut out,
                    );
                }
            }
        } else {
            self.oldest = revision;
        }
        self.objects = objects;
        self.revision = revision;
        self.synced = true;
        self.generation += 1;
        out
    }

    /// A put (`Some(object)`) or delete (`None`) of `key` at `revision`.
    pub fn apply(
        &mut self,
        key: String,
        object: Option<Arc<CachedObject>>,
        revision: i64,
    ) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        let event = match object {
            Some(object) => {
                let previous = self.objects.insert(key, Arc::clone(&object));
                Event {
                    kind: if previous.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    object,
                    previous,
                    revision,
                }
            }
            None => {
                // Deleting a key the cache never held changes nothing a watcher saw.
                let Some(previous) = self.objects.remove(&key) else {
                    self.revision = self.revision.max(revision);
                    return out;
                };
                Event {
                    kind: EventType::Deleted,
                    // The deleted object is reported in its last state at the deletion
                    // revision.
                    object: CachedObject::with_revision(&previous, revision),
                    previous: Some(previous),
                    revision,
                }
            }
        };
        self.record(event, &mut out);
        out
    }

    /// Nothing changed up to `revision`.
    pub fn progress_to(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Projection;

    const NONE: Projection = Projection { fields: &[] };

    fn object(name: &str, revision: i64) -> Arc<CachedObject> {
        CachedObject::new(
            &json!({"metadata": {"name": name, "namespace": "ns", "resourceVersion": revision.to_string()}}),
            revision,
            NONE,
        )
    }

    #[test]
    fn changes_become_events_and_history() {
        let mut state = CacheState::new(2);
        assert!(state.reset(BTreeMap::new(), 10).is_empty());
        let added = state.apply("/r/ns/a".into(), Some(object("a", 11)), 11);
        assert_eq!(added[0].kind, EventType::Added);
        let modified = state.apply("/r/ns/a".into(), Some(object("a", 12)), 12);
        assert_eq!(modified[0].kind, EventType::Modified);
        let deleted = state.apply("/r/ns/a".into(), None, 13);
        assert_eq!(deleted[0].kind, EventType::Deleted);
        assert_eq!(deleted[0].object.revision, 13);
        assert_eq!(deleted[0].object.name, "a");
        // The window holds two events: resuming before them is Expired.
        assert!(matches!(
            state.events_after(10),
            Err(WatchError::Expired { .. })
        ));
        assert_eq!(state.events_after(12).expect("in window").len(), 1);
        assert!(state.apply("/r/ns/gone".into(), None, 14).is_empty());
        assert_eq!(state.revision(), 14);
    }

    #[test]
    fn a_relist_emits_the_differences() {
        let mut state = CacheState::new(HISTORY);
        let first: BTreeMap<_, _> = [
            ("/r/ns/a".to_owned(), object("a", 5)),
            ("/r/ns/b".to_owned(), object("b", 6)),
        ]
        .into();
        state.reset(first, 6);
        let second: BTreeMap<_, _> = [
            ("/r/ns/b".to_owned(), object("b", 8)),
            ("/r/ns/c".to_owned(), object("c", 9)),
        ]
        .into();
        let events = state.reset(second, 9);
        let kinds: Vec<(EventType, &str)> = events
            .iter()
            .map(|e| (e.kind, e.object.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventType::Modified, "b"),
                (EventType::Added, "c"),
                (EventType::Deleted, "a")
            ]
        );
        assert_eq!(state.snapshot("/r/ns/").objects.len(), 2);
    }
}
