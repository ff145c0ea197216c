//! The API from tokio, as an application with async work would use it: an
//! upgrade decided in a tokio task (a token check against an async
//! service), and a task that owns a connection's `SocketRef` and sends to
//! it on its own schedule, replying to messages the handler forwards.

use std::time::Duration;

use ringws::app::{Accept, App, Deferred, Handler, Message, Reject, Request, Socket, Upgrade};
use ringws::{BackendKind, Config, ServerHandle, SocketRef};
use tokio::sync::mpsc;

mod common;
use common::{close_code, Client};

/// What the handler hands to the application's task.
enum ToTask {
    Opened(SocketRef),
    Text(String),
}

struct Bridge {
    rt: tokio::runtime::Handle,
    tasks: mpsc::UnboundedSender<ToTask>,
}

impl Handler for Bridge {
    type Data = ();

    fn upgrade(&self, req: &Request<'_>) -> Upgrade<()> {
        let token = req.query_param("token").unwrap_or("").to_owned();
        let rt = self.rt.clone();
        Upgrade::defer(move |d: Deferred<()>| {
            rt.spawn(async move {
                // The "token service" answers after a while.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if token == "good" {
                    d.accept(Accept::new(()));
                } else {
                    d.reject(Reject::new(401, "bad token"));
                }
            });
        })
    }

    fn open(&self, ws: &mut Socket<'_, ()>) {
        let _ = self.tasks.send(ToTask::Opened(ws.handle()));
    }

    fn message(&self, _ws: &mut Socket<'_, ()>, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            let _ = self.tasks.send(ToTask::Text(t.to_owned()));
        }
    }
}

/// The application's task: ticks to the connection, answers what it
/// forwards, and closes it after "bye".
async fn app_task(mut rx: mpsc::UnboundedReceiver<ToTask>) -> usize {
    let Some(ToTask::Opened(ws)) = rx.recv().await else {
        panic!("the connection opens first");
    };
    let mut ticks = 0;
    let mut timer = tokio::time::interval(Duration::from_millis(2));
    loop {
        tokio::select! {
            _ = timer.tick(), if ticks < 50 => {
                ws.send(format!("tick {ticks}").as_str()).unwrap();
                ticks += 1;
            }
            m = rx.recv() => match m {
                Some(ToTask::Text(t)) if t == "bye" => {
                    ws.close(1000, "bye").unwrap();
                    return ticks;
                }
                Some(ToTask::Text(t)) => {
                    ws.send(format!("re: {t}").as_str()).unwrap();
                }
                _ => panic!("one connection"),
            },
        }
    }
}

fn server(
    backend: BackendKind,
    rt: &tokio::runtime::Runtime,
) -> (ServerHandle, mpsc::UnboundedReceiver<ToTask>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let s = App::new(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        backend,
        ..Config::default()
    })
    .route(
        "/",
        Bridge {
            rt: rt.handle().clone(),
            tasks: tx,
        },
    )
    .start()
    .unwrap();
    (s, rx)
}

#[test]
fn tokio_tasks_decide_upgrades_and_send_through_socket_refs() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for backend in [BackendKind::IoUring, BackendKind::Epoll] {
        let (s, rx) = server(backend, &rt);
        // A bad token: refused by the task.
        let (mut c, head) = Client::request(s.local_addr(), "/?token=bad", "");
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        assert_eq!(c.rest(), b"bad token");

        let task = rt.spawn(app_task(rx));
        let mut c = Client::open(s.local_addr(), "/?token=good");
        let mut ticks = 0;
        let mut replies = 0;
        for i in 0..10 {
            c.text(&format!("m{i}"));
        }
        // The ticks in order, the replies in order, interleaved as the
        // task sent them.
        while ticks < 50 || replies < 10 {
            let m = c.next_text();
            if let Some(n) = m.strip_prefix("tick ") {
                assert_eq!(n.parse::<usize>().unwrap(), ticks, "{m}");
                ticks += 1;
            } else {
                assert_eq!(m, format!("re: m{replies}"));
                replies += 1;
            }
        }
        c.text("bye");
        let (b0, p) = c.frame().unwrap();
        assert_eq!((b0, close_code(&p)), (0x88, 1000));
        c.send(0x88, &p);
        assert_eq!(rt.block_on(task).unwrap(), 50);
        s.shutdown(Duration::from_secs(1));
    }
}
