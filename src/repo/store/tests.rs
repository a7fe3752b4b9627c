use super::schema::{BINARIES, META, SOURCES, decode_binary, encode_binary, split_binary};
use super::*;
use crate::repo::publish::Records;

#[test]
fn a_store_of_another_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbd.redb");
    drop(Store::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema", "999")
            .unwrap();
        tx.commit().unwrap();
    }
    match Store::open(&path) {
        Err(e @ StoreError::Schema { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("store schema version 999, this mbd needs 2"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a store of another schema"),
    }
    // Nothing of ours was written: the schema mark is still the foreign one.
    let db = Database::create(&path).unwrap();
    let rx = db.begin_read().unwrap();
    assert_eq!(
        rx.open_table(META)
            .unwrap()
            .get("schema")
            .unwrap()
            .unwrap()
            .value(),
        "999"
    );
}

#[test]
fn a_store_of_schema_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbd.redb");
    let binary = |package: &str| BinaryRecord {
        version: "1.0".into(),
        source_version: "1.0".into(),
        component: "main".into(),
        package_type: PackageType::Deb,
        section: "misc".into(),
        filename: format!("pool/main/x/x/{package}_1.0_all.deb"),
        sha256: "00".into(),
        stanza: format!("Package: {package}\n"),
    };
    let source = SourceRecord {
        version: "1.0".into(),
        component: "main".into(),
        directory: "pool/main/x/x".into(),
        files: Vec::new(),
        stanza: "Package: x\n".into(),
    };
    // Schema 1: JSON sources, binaries as JSON length, JSON, stanza.
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META).unwrap().insert("schema", "1").unwrap();
        let mut st = tx.open_table(SOURCES).unwrap();
        st.insert(
            ("r", "d", "x"),
            serde_json::to_vec(&source).unwrap().as_slice(),
        )
        .unwrap();
        let mut bt = tx.open_table(BINARIES).unwrap();
        for (src, package) in [("x", "x-b"), ("x", "x-a"), ("y", "y")] {
            let encoded = encode_binary(&binary(package), 0);
            bt.insert(("r", "d", src, package, "all"), &encoded[8..])
                .unwrap();
        }
        drop((st, bt));
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let records = store.records("r", "d").unwrap();
    // In key order, the source before its binaries.
    assert_eq!(records.arrivals().unwrap(), (vec![2, 3, 4], vec![1]));
    let mut seen = Vec::new();
    records
        .binaries(0, &mut |b| seen.push((b.seq, b.package.to_string())))
        .unwrap();
    assert_eq!(
        seen,
        [
            (2, "x-a".to_string()),
            (3, "x-b".to_string()),
            (4, "y".to_string())
        ]
    );
    drop(records);
    let mut tx = store.write().unwrap();
    let group = tx.group("r", "d", "x").unwrap();
    assert_eq!(group.source, Some(source));
    assert_eq!(group.binaries[0].record, binary("x-a"));
    // The next arrival follows the upgraded ones.
    tx.place_group("r", "d", "z", &Group::default()).unwrap();
    let y = tx.take_group("r", "d", "y").unwrap();
    tx.place_group("r", "d", "y", &y).unwrap();
    tx.commit().unwrap();
    let records = store.records("r", "d").unwrap();
    assert_eq!(records.arrivals().unwrap().0, [2, 3, 5]);
}

#[test]
fn an_arrival_whose_record_is_gone_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbd.redb");
    let store = Store::open(&path).unwrap();
    let group = Group {
        source: None,
        binaries: vec![Binary {
            package: "x-bin".into(),
            architecture: "amd64".into(),
            record: BinaryRecord {
                version: "1.0".into(),
                source_version: "1.0".into(),
                component: "main".into(),
                package_type: PackageType::Deb,
                section: "misc".into(),
                filename: "pool/main/x/x/x-bin_1.0_amd64.deb".into(),
                sha256: "00".into(),
                stanza: "Package: x-bin\n".into(),
            },
        }],
    };
    let mut tx = store.write().unwrap();
    tx.place_group("r", "d", "x", &group).unwrap();
    tx.commit().unwrap();
    // Damage: the record goes, its arrival number stays.
    let tx = store.db.begin_write().unwrap();
    tx.open_table(BINARIES)
        .unwrap()
        .remove(("r", "d", "x", "x-bin", "amd64"))
        .unwrap();
    tx.commit().unwrap();
    let records = store.records("r", "d").unwrap();
    assert_eq!(records.arrivals().unwrap().0, [1]);
    match records.binaries(0, &mut |_| panic!("no row to give")) {
        Err(e @ StoreError::Record { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("mbd.redb"), "{msg}");
            assert!(
                msg.contains("corrupt record x-bin: arrival 1 names a missing record"),
                "{msg}"
            );
        }
        other => panic!("not refused: {:?}", other.map(|()| "ok")),
    }
}

#[test]
fn binary_records_keep_their_stanza_raw() {
    let r = BinaryRecord {
        version: "1.0".into(),
        source_version: "1.0".into(),
        component: "main".into(),
        package_type: PackageType::Deb,
        section: "misc".into(),
        filename: "pool/main/x/x/x_1.0_all.deb".into(),
        sha256: "00".into(),
        stanza: "Package: x\nDescription: a \"quoted\" line\n".into(),
    };
    let bytes = encode_binary(&r, 7);
    assert!(bytes.ends_with(r.stanza.as_bytes()));
    assert_eq!(split_binary(&bytes).unwrap().0, 7);
    assert_eq!(decode_binary(Path::new("db"), "x", &bytes).unwrap(), r);
    assert!(decode_binary(Path::new("db"), "x", &bytes[..3]).is_err());
}

#[test]
fn a_restore_undoes_what_was_committed_since_the_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("mbd.redb")).unwrap();
    let mut tx = s.write().unwrap();
    tx.put_config("a", &1).unwrap();
    tx.commit().unwrap();
    let sp = s.savepoint().unwrap();
    for (k, v) in [("a", 2), ("b", 3)] {
        let mut tx = s.write().unwrap();
        tx.put_config(k, &v).unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(s.config::<i32>("a").unwrap(), Some(2));
    s.restore(&sp).unwrap();
    assert_eq!(s.config::<i32>("a").unwrap(), Some(1));
    assert_eq!(s.config::<i32>("b").unwrap(), None);
}
