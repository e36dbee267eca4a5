#include "consensus/raft_node.h"

#include <pthread.h>
#include <time.h>

#include <chrono>
#include <future>
#include <random>

#include "consensus/codec.h"

namespace cl::raft {

namespace {
Status stopped_status() { return Status::error("stopped", "the node is stopping"); }

// CPU time of the calling thread: a slow Ready's report tells computing
// apart from waiting (for the disk, a lock or a core).
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}
}  // namespace

RaftNode::RaftNode(RaftNodeOptions options, StateMachine* sm, std::unique_ptr<RaftStorage> storage,
                   std::unique_ptr<RaftCore> core)
    : options_(std::move(options)), sm_(sm), storage_(std::move(storage)), core_(std::move(core)) {}

Result<std::unique_ptr<RaftNode>> RaftNode::open(RaftNodeOptions options, StateMachine* sm) {
  auto storage = RaftStorage::open(options.dir, nullptr, options.store_io);
  if (!storage) return storage.status();
  auto restored = (*storage)->load();
  if (!restored) return restored.status();
  Index applied = sm->applied_index();
  Index last = restored->snapshot.index + restored->entries.size();
  auto install = (*storage)->recorded_install();
  if (!install) return install.status();
  std::optional<SnapshotMeta> resume;
  if (*install && (*install)->index == applied && applied > restored->snapshot.index) {
    // The state machine installed a leader's state to exactly the recorded
    // index, and the process died before a Ready recorded that install as
    // the snapshot (record_install() came first).  Finish the recording now,
    // as RaftLog::restore would: the log after it is kept only if it holds
    // the installed entry itself.
    const SnapshotMeta& m = **install;
    const bool suffix_matches =
        m.index <= last && m.index > restored->snapshot.index &&
        restored->entries[m.index - restored->snapshot.index - 1].term == m.term;
    std::vector<Entry> kept;
    if (suffix_matches)
      kept.assign(std::make_move_iterator(restored->entries.begin() + (m.index - restored->snapshot.index)),
                  std::make_move_iterator(restored->entries.end()));
    if (restored->hard_state.term < m.term) {  // not expected: the leader's term came first
      restored->hard_state.term = m.term;
      restored->hard_state.vote = kNoNode;
    }
    // (A local entry at or below the commit index matches the leader's, so
    // dropping the log never drops committed entries; clamped regardless.)
    restored->hard_state.commit = std::min<Index>(restored->hard_state.commit, m.index + kept.size());
    Ready rd;  // one synced write: snapshot, the kept entries, the hard state
    rd.snapshot = m;
    rd.entries = kept;
    rd.hard_state = restored->hard_state;
    Status s = (*storage)->save(rd);
    if (!s) return s;
    restored->snapshot = m;
    restored->entries = std::move(kept);
    last = restored->snapshot.index + restored->entries.size();
  } else if (*install && (*install)->index > applied) {
    // An install was under way when the process stopped.  It writes the
    // leader's journal into the state machine as it goes, so none of this
    // log may be applied on top of it: start() resumes the install first.
    resume = **install;
  }
  // Otherwise the state machine is never ahead of the log.
  if (applied > last)
    return Status::error("corruption", "the ledger has applied raft index " + std::to_string(applied) +
                                           " but the raft log ends at " + std::to_string(last) +
                                           " and no state install to that index was recorded");
  // The state machine is durable up to `applied`; entries after it are
  // re-applied from the log (never re-applied before it).
  restored->applied = std::max(applied, restored->snapshot.index);
  if (restored->hard_state.commit < restored->applied) restored->hard_state.commit = restored->applied;
  Config cfg;
  cfg.id = options.id;
  cfg.voters = options.voters;
  cfg.election_tick = options.election_tick;
  cfg.heartbeat_tick = 1;
  // The core's only randomness (election timeouts) comes from here: each
  // process draws its own seed, so replicas do not time out in lockstep.
  // Simulations pass a fixed seed instead.
  if (options.seed == 0) {
    std::random_device rd;
    options.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  cfg.seed = options.seed;
  auto core = RaftCore::open(cfg, std::move(*restored));
  if (!core) return core.status();
  if (resume && !options.fetch_snapshot)
    return Status::error("invalid", "a state install to raft index " + std::to_string(resume->index) +
                                        " was under way, and this node has no way to fetch state");
  std::unique_ptr<RaftNode> node(new RaftNode(std::move(options), sm, std::move(*storage), std::move(*core)));
  node->resume_install_ = resume;
  node->installing_.store(resume.has_value());
  return node;
}

RaftNode::~RaftNode() { stop(); }

Status RaftNode::start() {
  auto self = options_.peers.find(options_.id);
  if (self == options_.peers.end()) return Status::error("invalid", "raft: no address for this node");
  transport_ = std::make_unique<Transport>(options_.id, self->second, [this](Message m) {
    std::lock_guard<std::mutex> lock(mu_);
    if (inbox_.size() >= options_.inbox_max) return;  // dropped: Raft retries
    inbox_.push_back(std::move(m));
    cv_.notify_one();
  });
  Status s = transport_->start();
  if (!s) return s;
  for (const auto& [id, addr] : options_.peers) transport_->set_peer(id, addr);
  compact_checked_ = core_->snapshot().index;
  // Queued before the loop starts, so it runs before any Ready: nothing of
  // the log is applied until the interrupted install is complete.  "from"
  // unknown: the fetcher asks every peer.
  if (resume_install_) post([this, req = SnapshotRequest{*resume_install_, kNoNode}] { start_fetch(req); });
  applier_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cl-apply");
    apply_loop();
  });
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cl-raft");
    loop();
  });
  return Status::ok();
}

void RaftNode::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fetcher_.joinable()) fetcher_.join();
  // Requests the loop will never run: answered "stopped" (and any posted
  // from now on at once), so no caller waits for an answer forever.
  std::deque<Posted> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loop_ended_ = true;
    left.swap(commands_);
  }
  for (auto& c : left)
    if (c.stopped) c.stopped();
  // The applier applies what it was handed (committed entries; their
  // proposers get their results), then stops.
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    apply_stopping_ = true;
  }
  apply_cv_.notify_all();
  apply_room_cv_.notify_all();
  if (applier_.joinable()) applier_.join();
  std::multimap<Index, Done> reads;
  {
    std::lock_guard<std::mutex> lock(apply_mu_);
    reads.swap(reads_waiting_apply_);
  }
  for (auto& [i, d] : reads) d(stopped_status());
  if (transport_) transport_->stop();
}

Result<std::pair<Term, ConfState>> RaftNode::term_conf_at(Index index) {
  auto p = std::make_shared<std::promise<Result<std::pair<Term, ConfState>>>>();
  auto f = p->get_future();
  post(
      [this, index, p] {
        auto t = core_->term_at(index);
        if (!t || index + 1 < core_->first_index()) {
          p->set_value(Status::error("unavailable", "raft index " + std::to_string(index) + " is compacted"));
          return;
        }
        p->set_value(std::make_pair(*t, core_->conf_at(index)));
      },
      [p] { p->set_value(stopped_status()); });
  if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
    return Status::error("unavailable", "raft loop busy");
  return f.get();
}

void RaftNode::post(Command c, Command stopped) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!loop_ended_) {
      commands_.push_back(Posted{std::move(c), std::move(stopped)});
      cv_.notify_one();
      return;
    }
  }
  if (stopped) stopped();
}

void RaftNode::propose(std::string data, ProposeDone done) {
  auto d = std::make_shared<ProposeDone>(std::move(done));
  post(
      [this, data = std::move(data), d]() mutable {
        auto index = core_->propose(std::move(data));
        if (!index) return (*d)(index.status(), {});
        proposals_[*index] = Pending{core_->term(), std::move(*d)};
      },
      [d] { (*d)(stopped_status(), {}); });
}

void RaftNode::read_barrier(Done done) {
  auto d = std::make_shared<Done>(std::move(done));
  post(
      [this, d] {
        uint64_t ctx = next_read_ctx_++;
        Status s = core_->read_index(ctx);
        if (!s) return (*d)(s);
        reads_waiting_quorum_[ctx] = std::move(*d);
      },
      [d] { (*d)(stopped_status()); });
}

void RaftNode::transfer_leadership(NodeId to, Done done) {
  auto d = std::make_shared<Done>(std::move(done));
  post([this, to, d] { (*d)(core_->transfer_leadership(to)); }, [d] { (*d)(stopped_status()); });
}

void RaftNode::set_peer_address(NodeId node, PeerAddress address) {
  post([this, node, address] { transport_->set_peer(node, address); });
}

void RaftNode::change_membership(ConfChangeType type, NodeId node, PeerAddress address, std::string context,
                                 Done done) {
  auto d = std::make_shared<Done>(std::move(done));
  post(
      [this, type, node, address, context = std::move(context), d]() mutable {
        if (type == ConfChangeType::kAddNode) transport_->set_peer(node, address);
        auto index = core_->propose_conf_change(type, node, std::move(context));
        if (!index) return (*d)(index.status());
        conf_changes_[*index] = PendingChange{core_->term(), std::move(*d)};
      },
      [d] { (*d)(stopped_status()); });
}

Status RaftNode::record_install(const SnapshotMeta& meta) { return storage_->record_install(meta); }

RaftStatus RaftNode::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void RaftNode::loop() {
  using Clock = std::chrono::steady_clock;
  auto next_tick = Clock::now() + std::chrono::milliseconds(options_.tick_ms);
  while (true) {
    std::deque<Message> msgs;
    std::deque<Posted> cmds;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, next_tick, [this] { return stopping_ || !inbox_.empty() || !commands_.empty(); });
      if (stopping_) break;
      msgs.swap(inbox_);
      cmds.swap(commands_);
    }
    for (const auto& m : msgs) core_->step(m).to_string();  // invalid messages change nothing
    for (auto& c : cmds) c.run();
    if (Clock::now() >= next_tick) {
      core_->tick();
      next_tick += std::chrono::milliseconds(options_.tick_ms);
      if (next_tick < Clock::now()) next_tick = Clock::now() + std::chrono::milliseconds(options_.tick_ms);
    }
    if (retry_fetch_ && !fetching_ && Clock::now() >= retry_fetch_at_) {
      SnapshotRequest req = *retry_fetch_;
      retry_fetch_.reset();
      start_fetch(req);
    }
    while (core_->has_ready()) handle_ready();
  }
  fail_all(stopped_status());
}

void RaftNode::handle_ready() {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const double cpu0 = thread_cpu_ms();
  auto ms_since = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  Ready rd = core_->ready();
  if (!(rd.soft_state == last_soft_state_)) {
    last_soft_state_ = rd.soft_state;
    if (options_.on_soft_state) options_.on_soft_state(rd.soft_state);
  }
  // A leader's appends and heartbeats go out before its own write (see
  // may_send_before_persist); everything else only once it is durable.
  for (const auto& m : rd.messages)
    if (may_send_before_persist(m)) transport_->send(m);
  const auto t_persist = Clock::now();
  Status s = storage_->save(rd);
  CL_CHECK_MSG(s.is_ok(), s.to_string().c_str());
  const double persist_ms = ms_since(t_persist);
  for (const auto& m : rd.messages)
    if (!may_send_before_persist(m)) transport_->send(m);
  // Hand the committed entries to the applier, in log order, each with its
  // proposer's callback.  (A moved-from Entry keeps its index and term:
  // advance() below reads only those.)
  const auto t_apply = Clock::now();
  if (!rd.committed_entries.empty()) {
    std::vector<ToApply> run;
    run.reserve(rd.committed_entries.size());
    for (auto& e : rd.committed_entries) {
      if (e.type == EntryType::kConfChange && options_.on_conf_change) {
        auto cc = decode_conf_change(e.data);
        CL_CHECK_MSG(cc.is_ok(), "committed configuration change does not decode");
        if (auto address = options_.on_conf_change(*cc)) transport_->set_peer(cc->node, *address);
      }
      ToApply a;
      auto p = proposals_.find(e.index);
      if (p != proposals_.end()) {
        // Our proposal is committed only if the entry at its index is still ours.
        if (p->second.term == e.term) a.proposed = std::move(p->second.done);
        else p->second.done(Status::error("lost", "leadership changed; the op may be retried by id"), {});
        proposals_.erase(p);
      }
      auto c = conf_changes_.find(e.index);
      if (c != conf_changes_.end()) {
        // As for proposals: ours only if the entry at its index is still ours.
        if (c->second.term == e.term) a.conf_done = std::move(c->second.done);
        else c->second.done(Status::error("lost", "leadership changed before the change committed; see /v1/cluster"));
        conf_changes_.erase(c);
      }
      a.entry = std::move(e);
      run.push_back(std::move(a));
    }
    {
      std::unique_lock<std::mutex> lock(apply_mu_);
      apply_room_cv_.wait(lock, [this] { return apply_queue_.size() < options_.apply_queue_max || apply_stopping_; });
      for (auto& a : run) apply_queue_.push_back(std::move(a));
    }
    apply_cv_.notify_one();
  }
  const double apply_ms = ms_since(t_apply);
  // Linearizable reads: answered once everything committed before the read
  // is applied here (by the applier, or now if it already is).
  std::vector<Done> reads_now;
  for (const auto& r : rd.read_states) {
    auto w = reads_waiting_quorum_.find(r.ctx);
    if (w == reads_waiting_quorum_.end()) continue;
    {
      std::lock_guard<std::mutex> lock(apply_mu_);
      if (sm_->applied_index() >= r.index) reads_now.push_back(std::move(w->second));
      else reads_waiting_apply_.emplace(r.index, std::move(w->second));
    }
    reads_waiting_quorum_.erase(w);
  }
  for (auto& d : reads_now) d(Status::ok());
  core_->advance(rd);
  if (rd.snapshot_request && !fetching_ && options_.fetch_snapshot) {
    retry_fetch_.reset();
    start_fetch(*rd.snapshot_request);
  }
  // Proposals this node can no longer commit: it is not the leader any more.
  if (core_->role() != Role::kLeader) {
    Status lost = Status::error("not_leader", "leadership changed; the op may be retried by id");
    for (auto& [i, p] : proposals_) p.done(lost, {});
    proposals_.clear();
    for (auto& [ctx, d] : reads_waiting_quorum_) d(lost);
    reads_waiting_quorum_.clear();
  }
  if (options_.slow_ready_ms > 0 && options_.on_slow_ready) {
    double total_ms = ms_since(t0);
    if (total_ms >= static_cast<double>(options_.slow_ready_ms))
      options_.on_slow_ready(SlowReady{persist_ms, apply_ms, total_ms, thread_cpu_ms() - cpu0, rd.entries.size(),
                                       rd.committed_entries.size()});
  }
  RaftStatus st;
  st.role = core_->role();
  st.term = core_->term();
  st.leader = core_->leader();
  st.commit = core_->commit();
  st.applied = sm_->applied_index();
  if (st.role == Role::kLeader) {
    for (NodeId v : core_->conf().voters) {
      auto m = core_->match_index(v);
      if (m) st.match[v] = *m;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(st);
}

void RaftNode::start_fetch(SnapshotRequest req) {
  // The leader compacted what we need: fetch its state on a worker thread.
  // The state machine is the fetcher's until an install succeeds: no
  // applies meanwhile, and none after a failed one either (the state may be
  // half-installed), until a retry completes it.
  fetching_ = true;
  installing_.store(true);
  core_->set_apply_paused(true);
  if (fetcher_.joinable()) fetcher_.join();
  fetcher_ = std::thread([this, req] {
    wait_applier_idle();  // entries handed over before the pause are applied first
    auto meta = options_.fetch_snapshot(req);
    post([this, meta, req] {
      fetching_ = false;
      if (!meta) {
        retry_fetch_ = req;
        retry_fetch_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(kFetchRetryMs);
        return;
      }
      core_->report_snapshot_done(*meta).to_string();  // refused if already past it
      core_->set_apply_paused(false);
      installing_.store(false);
    });
  });
}

void RaftNode::fail_all(const Status& s) {
  for (auto& [i, p] : proposals_) p.done(s, {});
  proposals_.clear();
  for (auto& [c, d] : reads_waiting_quorum_) d(s);
  reads_waiting_quorum_.clear();
  for (auto& [i, c] : conf_changes_) c.done(s);
  conf_changes_.clear();
}

void RaftNode::apply_loop() {
  using Clock = std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(apply_mu_);
  while (true) {
    apply_cv_.wait(lock, [this] { return !apply_queue_.empty() || apply_stopping_; });
    if (apply_queue_.empty()) break;  // stopping, and everything handed over is applied
    applying_ = true;
    const auto t0 = Clock::now();
    const double cpu0 = thread_cpu_ms();
    size_t count = 0;
    std::vector<Done> reads;
    // One entry at a time off the queue: a Raft thread waiting for room
    // waits for one apply, not for a whole run.
    while (!apply_queue_.empty()) {
      ToApply a = std::move(apply_queue_.front());
      apply_queue_.pop_front();
      lock.unlock();
      apply_room_cv_.notify_all();
      const Entry& e = a.entry;
      std::any result;
      bool applied_now = false;
      if (e.index > sm_->applied_index()) {  // else already durable in the state machine (restart)
        if (e.type == EntryType::kNormal) result = sm_->apply(e);
        else sm_->skip(e.index);
        applied_now = true;
      }
      if (a.proposed) {
        if (applied_now) a.proposed(Status::ok(), std::move(result));
        else a.proposed(Status::error("lost", "the entry was applied before this node restarted"), {});
      }
      if (a.conf_done) a.conf_done(Status::ok());
      ++count;
      lock.lock();
      while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= sm_->applied_index()) {
        reads.push_back(std::move(reads_waiting_apply_.begin()->second));
        reads_waiting_apply_.erase(reads_waiting_apply_.begin());
      }
      if (!reads.empty()) {
        lock.unlock();
        for (auto& d : reads) d(Status::ok());
        reads.clear();
        lock.lock();
      }
    }
    lock.unlock();
    // Compaction: drop the log the state machine has durably applied (a
    // crash loses the rest of its state, which the log then re-applies).
    // The state machine is asked here, on the thread that applies to it.
    const Index applied = sm_->applied_index();
    if (options_.compact_every > 0 && applied >= compact_checked_ + options_.compact_every) {
      auto durable = sm_->durable_index();
      const Index at = durable ? std::min(*durable, applied) : 0;
      if (at > compact_checked_) {
        compact_checked_ = at;
        post([this, at] { maybe_compact(at); });
      }
    }
    if (options_.slow_ready_ms > 0 && options_.on_slow_ready) {
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (ms >= static_cast<double>(options_.slow_ready_ms))
        options_.on_slow_ready(SlowReady{0, ms, ms, thread_cpu_ms() - cpu0, 0, count, true});
    }
    lock.lock();
    applying_ = false;
    apply_room_cv_.notify_all();
  }
}

void RaftNode::maybe_compact(Index at) {
  if (fetching_ || at <= core_->snapshot().index) return;
  auto term = core_->term_at(at);
  if (!term) return;
  SnapshotMeta meta{at, *term, core_->conf_at(at)};
  if (core_->compact(meta)) CL_CHECK_MSG(storage_->compact(meta).is_ok(), "raft log compaction failed");
}

void RaftNode::wait_applier_idle() {
  std::unique_lock<std::mutex> lock(apply_mu_);
  apply_room_cv_.wait(lock, [this] { return (apply_queue_.empty() && !applying_) || apply_stopping_; });
}

}  // namespace cl::raft
