use super::*;

fn params(member: &str, protocols: &[&str]) -> JoinParams {
    JoinParams {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member: false,
    }
}

fn now_join(r: Reply<JoinOutcome>) -> JoinOutcome {
    match r {
        Reply::Now(o) => o,
        Reply::Wait(mut rx) => rx.try_recv().expect("join completed"),
    }
}

#[test]
fn second_member_triggers_a_rebalance_and_both_get_the_leaders_assignment() {
    let c = Coordinator::new(Duration::ZERO);
    let a = now_join(c.join("g", params("", &["range", "roundrobin"])));
    assert_eq!((a.error, a.generation), (None, 1));
    assert_eq!(a.leader, a.member_id);
    assert_eq!(a.members.len(), 1);
    let Reply::Wait(mut rx_a) = c.sync(
        "g",
        &a.member_id,
        1,
        vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
    ) else {
        panic!("leader sync waits");
    };
    assert_eq!(
        rx_a.try_recv().expect("synced").assignment,
        Bytes::from_static(b"all")
    );
    assert_eq!(c.heartbeat("g", &a.member_id, 1), None);

    // B joins: it waits until A rejoins, which A learns from its heartbeat.
    let Reply::Wait(mut rx_b) = c.join("g", params("", &["roundrobin"])) else {
        panic!("waits")
    };
    assert!(rx_b.try_recv().is_err());
    assert_eq!(
        c.heartbeat("g", &a.member_id, 1),
        Some(ResponseError::RebalanceInProgress)
    );
    let a2 = now_join(c.join("g", params(&a.member_id, &["range", "roundrobin"])));
    let b = rx_b.try_recv().expect("b joined");
    assert_eq!((a2.generation, b.generation), (2, 2));
    assert_eq!(a2.leader, a.member_id, "the leader stays");
    assert_eq!(a2.members.len(), 2);
    assert!(b.members.is_empty(), "only the leader gets the member list");
    assert_eq!(
        a2.protocol_name, "roundrobin",
        "the only protocol both support"
    );

    // B syncs first and waits; the leader's sync releases both.
    let Reply::Wait(mut rx_b) = c.sync("g", &b.member_id, 2, vec![]) else {
        panic!("waits")
    };
    let given = vec![
        (a.member_id.clone(), Bytes::from_static(b"p0")),
        (b.member_id.clone(), Bytes::from_static(b"p1")),
    ];
    let Reply::Wait(mut rx_a) = c.sync("g", &a.member_id, 2, given) else {
        panic!("waits")
    };
    assert_eq!(
        rx_a.try_recv().expect("a").assignment,
        Bytes::from_static(b"p0")
    );
    assert_eq!(
        rx_b.try_recv().expect("b").assignment,
        Bytes::from_static(b"p1")
    );
    assert_eq!(c.describe("g").expect("group").state, "Stable");
    // A stale generation is refused.
    assert_eq!(
        c.heartbeat("g", &b.member_id, 1),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        c.check_commit("g", &b.member_id, 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(c.check_commit("g", &b.member_id, 2), Ok(()));
    assert_eq!(
        c.check_commit("g", "", -1),
        Err(ResponseError::UnknownMemberId)
    );

    // A leaves: B alone forms generation 3 once it rejoins.
    assert_eq!(c.leave("g", std::slice::from_ref(&a.member_id)), vec![None]);
    assert_eq!(
        c.heartbeat("g", &b.member_id, 2),
        Some(ResponseError::RebalanceInProgress)
    );
    let b3 = now_join(c.join("g", params(&b.member_id, &["roundrobin"])));
    assert_eq!(
        (b3.generation, b3.leader.as_str()),
        (3, b.member_id.as_str())
    );
}

#[test]
fn a_member_silent_during_a_rebalance_expires_after_its_session_not_the_rebalance_timeout() {
    // kafka-python sometimes stops heartbeating after a quick rejoin; the group must not
    // wait its five-minute rebalance timeout for it.
    let c = Coordinator::new(Duration::ZERO);
    let mut p = params("", &["range"]);
    p.rebalance_timeout = Duration::from_secs(300);
    let a = now_join(c.join("g", p));
    let _ = c.sync("g", &a.member_id, 1, vec![]);
    let Reply::Wait(mut rx_b) = c.join("g", params("", &["range"])) else {
        panic!("b waits for a to rejoin")
    };
    c.tick(Instant::now() + Duration::from_secs(5));
    assert!(rx_b.try_recv().is_err(), "a's session has not lapsed yet");
    c.tick(Instant::now() + Duration::from_secs(11));
    let b = rx_b.try_recv().expect("b's join completes without a");
    assert_eq!((b.error, b.generation), (None, 2));
    assert_eq!(b.leader, b.member_id);
    assert_eq!(
        c.heartbeat("g", &a.member_id, 1),
        Some(ResponseError::UnknownMemberId),
        "a learns it must join again"
    );
}

#[test]
fn a_new_member_gets_its_id_first_and_enters_the_group_when_it_joins_with_it() {
    let c = Coordinator::new(Duration::ZERO);
    let mut p = params("", &["range"]);
    p.require_known_member = true;
    let first = now_join(c.join("g", p));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(!first.member_id.is_empty(), "the id to join with");
    assert!(
        c.describe("g").is_none_or(|g| g.members.is_empty()),
        "not a member yet"
    );
    let mut again = params(&first.member_id, &["range"]);
    again.require_known_member = true;
    let joined = now_join(c.join("g", again));
    assert_eq!((joined.error, joined.generation), (None, 1));
    assert_eq!(joined.member_id, first.member_id);

    // An id given out but never used lapses after the session timeout.
    let mut p = params("", &["range"]);
    p.require_known_member = true;
    let unused = now_join(c.join("g", p));
    c.tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(
        now_join(c.join("g", params(&unused.member_id, &["range"]))).error,
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn silent_members_expire_and_an_empty_group_accepts_simple_commits() {
    let c = Coordinator::new(Duration::ZERO);
    let a = now_join(c.join("g", params("", &["range"])));
    let _ = c.sync("g", &a.member_id, 1, vec![]);
    assert_eq!(c.list().len(), 1);
    c.tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(
        c.heartbeat("g", &a.member_id, 1),
        Some(ResponseError::UnknownMemberId)
    );
    // Kept, empty, with its members' protocol type, as Kafka keeps it.
    let listed = c.list();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.as_str(), listed[0].2), ("g", "Empty"));
    assert!(
        !listed[0].1.is_empty(),
        "the members' protocol type is kept"
    );
    assert_eq!(c.check_commit("g", "", -1), Ok(()));
    assert_eq!(
        c.check_commit("g", "ghost", 4),
        Err(ResponseError::UnknownMemberId)
    );
    // DeleteGroups forgets it.
    assert!(c.remove_if_empty("g"));
    assert!(c.list().is_empty());
}

#[test]
fn incompatible_members_are_refused() {
    let c = Coordinator::new(Duration::ZERO);
    let _ = now_join(c.join("g", params("", &["range"])));
    assert_eq!(
        now_join(c.join("g", params("", &["sticky"]))).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        now_join(c.join("g", params("nobody", &["range"]))).error,
        Some(ResponseError::UnknownMemberId)
    );
    let mut p = params("", &["range"]);
    p.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_join(c.join("g", p)).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
}
