//! The registry over a store in memory: replay after compaction, reads during a write.

use super::*;

/// A store in memory that can be compacted the way the log compacts: the last record
/// of each key, at its own position.
#[derive(Debug, Default)]
struct MemStore(Mutex<Vec<Change>>);

impl Store for Arc<MemStore> {
    fn replay(&self) -> Result<Vec<Change>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn append(&self, changes: &[Change]) -> Result<(), String> {
        self.0.lock().unwrap().extend_from_slice(changes);
        Ok(())
    }
}

impl MemStore {
    fn compacted(&self) -> Arc<MemStore> {
        let all = self.0.lock().unwrap().clone();
        let kept = all
            .iter()
            .enumerate()
            .filter(|(i, c)| !all[i + 1..].iter().any(|l| l.key() == c.key()))
            .map(|(_, c)| c.clone())
            .filter(|c| !matches!(c, Change::Forget { .. }))
            .collect();
        Arc::new(MemStore(Mutex::new(kept)))
    }
}

fn record(name: &str, field_type: &str) -> String {
    format!(
        r#"{{"type":"record","name":"{name}","fields":[{{"name":"x","type":"{field_type}"}}]}}"#
    )
}

/// After compaction a referring version can come before the version it refers to; the
/// replay still restores both, and ids are not reused after the highest is forgotten.
#[test]
fn replay_survives_compaction_reordering_references() {
    let store = Arc::new(MemStore::default());
    let (r, _) = Registry::open(Box::new(store.clone())).unwrap();
    let a = r
        .register("a", SchemaType::Avro, &record("A", "long"), Vec::new())
        .unwrap();
    let refs = vec![Reference {
        name: "A".into(),
        subject: "a".into(),
        version: 1,
    }];
    let b = r
        .register("b", SchemaType::Avro, &record("B", "A"), refs)
        .unwrap();
    // A live referrer, then a soft-deleted one, keeps `a` version 1 from being removed.
    assert_eq!(
        r.delete_version("a", VersionSel::Number(1), false)
            .unwrap_err()
            .code,
        42206
    );
    r.delete_version("b", VersionSel::Number(1), false).unwrap();
    r.delete_version("a", VersionSel::Number(1), false).unwrap();
    assert_eq!(
        r.delete_version("a", VersionSel::Number(1), true)
            .unwrap_err()
            .code,
        42206
    );
    let c = r
        .register("c", SchemaType::Avro, &record("C", "int"), Vec::new())
        .unwrap();
    r.delete_subject("c", false).unwrap();
    r.delete_subject("c", true).unwrap();

    let (again, warnings) = Registry::open(Box::new(store.compacted())).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again.schema(b).unwrap().references[0].subject, "a");
    assert!(
        again
            .version("b", VersionSel::Number(1), true)
            .unwrap()
            .deleted
    );
    assert_eq!(again.schema(a).unwrap().id, a);
    assert!(again.schema(c).is_err(), "forgotten for good");
    let d = again
        .register("d", SchemaType::Avro, &record("D", "string"), Vec::new())
        .unwrap();
    assert_eq!(d, c + 1, "the forgotten id {c} is not handed out again");
}

/// A store whose appends wait until the test lets them finish.
#[derive(Debug)]
struct SlowStore {
    entered: std::sync::mpsc::SyncSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Store for SlowStore {
    fn replay(&self) -> Result<Vec<Change>, String> {
        Ok(Vec::new())
    }
    fn append(&self, _: &[Change]) -> Result<(), String> {
        self.entered.send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        Ok(())
    }
}

#[test]
fn reads_go_on_while_a_change_is_being_written() {
    use std::sync::mpsc::{channel, sync_channel};
    use std::time::Duration;
    let (entered, wait_entered) = sync_channel(1);
    let (release, released) = channel();
    let store = SlowStore {
        entered,
        release: Mutex::new(released),
    };
    let (registry, _) = Registry::open(Box::new(store)).unwrap();
    let registry = Arc::new(registry);
    let writer = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            registry.register("s", SchemaType::Avro, &record("R", "int"), Vec::new())
        })
    };
    wait_entered.recv().unwrap();
    // The registration is inside its fsync: reads answer now, without it.
    let (answered, answer) = channel();
    {
        let registry = registry.clone();
        std::thread::spawn(move || {
            let _ = answered.send((registry.subjects(false, ""), registry.level(None)));
        });
    }
    let (subjects, level) = answer
        .recv_timeout(Duration::from_secs(10))
        .expect("a read waited for the fsync");
    assert!(subjects.is_empty(), "nothing unwritten is served");
    assert_eq!(level, Some(CompatibilityLevel::Backward));
    release.send(()).unwrap();
    assert_eq!(writer.join().unwrap().unwrap(), 1);
    assert_eq!(registry.subjects(false, ""), vec!["s".to_string()]);
}
