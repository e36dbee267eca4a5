// The real ledger behind the simulator's StateMachine interface: every
// simulated node applies committed batch entries through api::decode_batch
// and api::LedgerStateMachine (the node's own apply path) into a cl::Ledger
// stored in a private RocksDB in-memory Env (no disk I/O).  Snapshots are the
// journal's canonical entries, replayed into a fresh ledger on load.
//
// LedgerWorld is the fixed, deterministic op pool the simulated clients draw
// from: a setup batch (open + fund the wallets) and signed fares, transfers,
// redeems and payouts (some payout pairs deliberately share a (program,
// reference): the ledger must pay at most one of each pair).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "tests/sim/state_machine.h"
#include "wallet/op.h"

namespace rocksdb {
class Env;
}
namespace cl::api {
class LedgerStateMachine;
}

namespace cl::sim {

struct PoolOp {
  Envelope env;
  std::string id;             // op id hex: the payload id for dedup accounting
  bool conflicting = false;   // a payout whose (program, reference) another pool op also uses
};

struct LedgerWorld {
  Genesis genesis;
  std::vector<WalletId> wallets;
  std::vector<PoolOp> setup;  // one batch: opens and issues; must commit before the pool
  std::vector<PoolOp> pool;   // every op is accepted in any order once setup is applied
};
const LedgerWorld& ledger_world();

// Ledger time a simulated proposer stamps on a batch at virtual time now_ms.
inline uint64_t ledger_time_at(uint64_t now_ms) { return 1'000'000 + now_ms; }

class LedgerMachine final : public StateMachine {
 public:
  LedgerMachine();
  ~LedgerMachine() override;

  void apply(const raft::Entry& e) override;
  raft::Index applied_index() const override { return applied_; }
  std::string digest() const override;
  std::string save() const override;
  Status load(std::string_view bytes) override;
  size_t count(std::string_view payload_id) const override;

  const Ledger& ledger() const { return *ledger_; }

  // End-of-run checks over this replica's journal and wallets; "" if all hold:
  // Σ balances over the world's wallets == supply outstanding; every op id in
  // the journal at most once; no (program, reference) paid twice; the
  // incremental counts agree with the journal.  `journal_ids` receives the
  // journal's op id counts.
  std::string audit(std::map<std::string, size_t>* journal_ids) const;

 private:
  void open_fresh();

  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<api::LedgerStateMachine> applier_;
  raft::Index applied_ = 0;
  std::map<std::string, size_t> counts_;  // op id hex -> times journaled
};

}  // namespace cl::sim
