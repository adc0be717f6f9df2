//! Presence for crowds, over real TCP in both wire modes: below the
//! presence threshold every join and leave is its own `JOINED` or `LEFT`;
//! from it on they come together in periodic `PRESENCE` events with the
//! count and the names; `WELCOME` then carries the count alone, and `WHO`
//! stays exact and pages by name.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BinClient, TextClient, start_memory};
use pixchat::protocol::{Command, Event, Presence, Reply, ServerMsg, Welcome};

/// A server that batches from `threshold` users online, every 100 ms.
async fn server(threshold: usize) -> common::TestServer {
    start_memory(pixchat::Config {
        presence: pixchat::PresenceConfig {
            threshold,
            interval: Duration::from_millis(100),
        },
        ..Default::default()
    })
    .await
}

async fn bin_join(c: &mut BinClient, name: &str) -> Welcome {
    c.send(Command::Join {
        name: name.into(),
        resume: None,
        quiet: false,
    })
    .await;
    let w = match c.reply().await {
        Reply::Welcome(w) => w,
        other => panic!("{other:?}"),
    };
    assert!(matches!(c.reply().await, Reply::Canvas(_)));
    w
}

/// The next `PRESENCE` event, failing on a `JOINED` or `LEFT` before it.
async fn bin_presence(c: &mut BinClient) -> Presence {
    loop {
        match c.event().await {
            Event::Presence(p) => return p,
            e @ (Event::Joined { .. } | Event::Left { .. }) => {
                panic!("a crowd got {e:?} instead of a PRESENCE")
            }
            _ => {}
        }
    }
}

fn names(list: &[Arc<str>]) -> Vec<&str> {
    list.iter().map(|n| &**n).collect()
}

#[tokio::test]
async fn a_crowd_gets_presence_events_instead_of_joined_and_left() {
    let server = server(3).await;
    let mut al = TextClient::joined(server.addr, "al").await;
    let mut watcher = BinClient::connect(server.addr).await;
    let w = bin_join(&mut watcher, "watcher").await;
    // Two online: below the threshold, names and single events.
    assert_eq!((w.online, w.users.len()), (2, 2));
    al.expect("JOINED watcher").await;

    // The third user makes a crowd: no JOINED, a PRESENCE instead, in
    // both modes, and the newcomer's welcome has the count alone.
    let mut cy = BinClient::connect(server.addr).await;
    let w = bin_join(&mut cy, "cy").await;
    assert_eq!((w.online, w.users.len()), (3, 0));
    assert_eq!(al.until("PRESENCE").await, "PRESENCE 3 1 0 +cy");
    let p = bin_presence(&mut watcher).await;
    assert_eq!((p.online, p.joined, p.left), (3, 1, 0));
    assert_eq!(names(&p.joined_names), ["cy"]);

    // Several changes in one period come out as one event, net: dee came
    // and went, eve and Fay came, cy went; a quiet join is only counted.
    let mut dee = TextClient::joined(server.addr, "dee").await;
    let _eve = TextClient::joined(server.addr, "eve").await;
    let _fay = TextClient::joined(server.addr, "Fay").await;
    let mut cron = TextClient::connect(server.addr).await;
    assert!(cron.cmd("JOIN cron quiet").await.starts_with("OK cron "));
    assert_eq!(dee.cmd("QUIT").await, "OK bye");
    drop(cy);
    // The events of one period may be split over two ticks; add them up.
    let (mut joined, mut left, mut online) = (Vec::new(), Vec::new(), 0);
    while online != 5 || joined.len() + left.len() < 3 {
        let line = al.until("PRESENCE").await;
        let words: Vec<&str> = line.split(' ').collect();
        online = words[1].parse().unwrap();
        for w in &words[4..] {
            let (sign, n) = w.split_at(1);
            let (this, other) = if sign == "+" {
                (&mut joined, &mut left)
            } else {
                (&mut left, &mut joined)
            };
            match other.iter().position(|o| o == n) {
                Some(i) => {
                    other.remove(i);
                }
                None => this.push(n.to_string()),
            }
        }
    }
    joined.sort();
    assert_eq!(joined, ["Fay", "eve"], "joined: {joined:?}, left: {left:?}");
    assert_eq!(left, ["cy"]);
    assert!(!joined.iter().any(|n| n == "dee" || n == "cron"));

    // WHO stays exact, quiet users marked, and pages by name.
    assert_eq!(al.cmd("WHO").await, "OK 5 al cron* eve Fay watcher");
    assert_eq!(al.cmd("WHO cron*").await, "OK 5 eve Fay watcher");
    assert_eq!(al.cmd("WHO FAY").await, "OK 5 watcher");
    assert_eq!(al.cmd("WHO zzz").await, "OK 5");
    match watcher.cmd(Command::WhoAfter { after: "al".into() }).await {
        Reply::Who { online, users } => {
            assert_eq!(
                (online, users),
                (
                    5,
                    vec!["cron*".into(), "eve".into(), "Fay".into(), "watcher".into()]
                )
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn leaving_the_crowd_sends_what_was_batched_before_single_events() {
    let server = server(3).await;
    let mut al = TextClient::joined(server.addr, "al").await;
    let mut bo = TextClient::joined(server.addr, "bo").await;
    al.expect("JOINED bo").await;
    let mut cy = TextClient::joined(server.addr, "cy").await;
    // cy's join is batched; cy leaving brings the room below the threshold
    // at once: the batch goes out before the LEFT (if no tick sent it
    // already), so a client never sees a LEFT for a name a later event
    // says joined.
    assert_eq!(cy.cmd("QUIT").await, "OK bye");
    let mut seen = Vec::new();
    loop {
        let l = al.line().await;
        let done = l == "LEFT cy" || l.starts_with("PRESENCE 2 ");
        seen.push(l);
        if done {
            break;
        }
    }
    assert_eq!(seen, ["PRESENCE 3 1 0 +cy", "LEFT cy"]);
    // Below the threshold again: single events.
    assert_eq!(bo.cmd("QUIT").await, "OK bye");
    assert_eq!(al.until("LEFT").await, "LEFT bo");
}

#[tokio::test]
async fn below_the_threshold_nothing_changes() {
    let server = server(1000).await;
    let mut al = TextClient::joined(server.addr, "al").await;
    let mut bo = BinClient::connect(server.addr).await;
    let w = bin_join(&mut bo, "bo").await;
    assert_eq!(w.users, ["al", "bo"]);
    assert_eq!(al.line().await, "JOINED bo");
    assert_eq!(al.cmd("SAY hi").await, "OK");
    loop {
        match bo.next().await {
            ServerMsg::Event(Event::Msg { .. }) => break,
            ServerMsg::Event(Event::Presence(p)) => panic!("{p:?}"),
            _ => {}
        }
    }
}
