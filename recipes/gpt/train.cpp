// recipes/gpt/train.cpp — the GPT pretraining recipe: schema, training loop, evaluation, sampling,
// checkpoints with exact resume, and `modu generate`.
//
// Invariants:
//  - A step is: batch_size / micro_batch_size micro-batches, each loss scaled by 1/accumulation so
//    the gradient is the mean over the global batch; clip; one AdamW update with the schedule's lr.
//  - Resume is bit-identical: a checkpoint holds the parameters, AdamW's m, v and step counter, the
//    data loader's global sample index and the effective recipe; the learning rate is a function of the
//    step and dropout masks of the samples (gpt::DropoutKey). N steps straight == K steps, stop, resume,
//    N - K steps.
//  - SIGINT/SIGTERM (and SIGUSR1) finish the running step, commit a checkpoint and exit 0. Under mpirun,
//    signal mpirun with SIGUSR1, which it forwards to every rank (it turns SIGTERM into killing the job;
//    launch/mpirun.sh turns SIGTERM into SIGUSR1). A signal reaching some ranks only stops them all: the
//    stop flag is all-reduced at every step end, so every rank commits the same step.
//  - Data parallelism (mpirun -np N; parallel/): train.batch_size stays the global batch per step; DP
//    rank d reads its share of each micro-step's global samples [g + d*micro, g + (d+1)*micro), so the
//    union over ranks of a step is the same global batch as one process; gradients are averaged over
//    DP in buckets during the last micro-batch's backward (none on accumulation micro-steps); the
//    logged loss is the global mean. Rank 0 alone prints and writes metrics; every rank writes its
//    shard of each checkpoint (ZeRO: its optimizer-state pieces as flat ranges; rank 0 the weights),
//    rank 0 commits, and a checkpoint resumes under any DP size (the pieces are re-sliced).
//  - Pipeline parallelism (parallel.pp > 1; recipes/gpt/pipeline.h): each stage owns, updates and checkpoints
//    its layers; the step's micro-batches go through the 1F1B or interleaved schedule, gradients are
//    averaged over the DP group during each stage's last backward, the clip norm is summed over the stages, and the
//    loss is the last stages' mean. DP rank 0 of every stage writes its stage's weights (global names).
//  - Tensor parallelism (parallel.tp > 1; recipes/gpt/tensor_parallel.h): every rank builds the whole model from
//    the global seed and keeps its TP shard of each block's matrices; the ranks of a TP group read the same
//    micro-batches; the clip norm is summed over the TP group (replicated parameters counted once); checkpoints
//    hold global tensors (the shards gathered to TP rank 0 of DP rank 0, AdamW state shaped), so they resume
//    under any TP, DP and PP size. With PP, each stage's blocks are split over its TP group (activations between
//    stages are replicated over TP: each TP rank sends to its own peer). The vocabulary is split too: the
//    embedding / LM head rows (gpt2's tied wte, and its last-stage copy under PP) and the cross-entropy are
//    vocabulary-parallel, so the clip norm counts them as shards; the vocabulary pads to a multiple of
//    model.pad_vocab_to x TP, the padding rows stay exactly zero, and checkpoints store one process's rows
//    (GptConfig::stored_vocab), loading into any padding (rows copied, the rest zero: weights and AdamW state,
//    shaped or flat). Not yet: TP on CUDA.
//  - Sequence parallelism (parallel.sequence_parallel with parallel.tp > 1; GPT::shard_tensor_parallel): each TP
//    rank holds train.seq_len / tp positions outside the TP regions (refused unless divisible; a no-op at tp = 1);
//    every parameter's gradient is still whole and bit-identical over the TP group after backward (the
//    sequence-region parameters' partial gradients are summed over TP on the tape, before DataParallel's hooks),
//    so DP averaging, ZeRO, the clip norm and checkpoints are unchanged; under PP, stages pass the slices.
//  - Checkpoints go to OUT_DIR/checkpoints/step_NNNNNNNN/ (checkpoint/ layer: manifest last, then
//    `latest`); metrics to OUT_DIR/metrics.jsonl, one object per logged step.
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <streambuf>

#include "checkpoint/checkpoint.h"
#include "core/allocator.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "data/token_loader.h"
#include "data/tokenizers.h"
#include "nn/autocast.h"
#include "optim/optim.h"
#include "parallel/comm.h"
#include "parallel/data_parallel.h"
#include "parallel/mesh.h"
#include "recipes/entry.h"
#include "recipes/gpt/model.h"
#include "recipes/gpt/pipeline.h"
#include "recipes/gpt/sampling.h"
#include "recipes/gpt/tensor_parallel.h"
#include "recipes/metrics.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace modu::recipes {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

struct StopSignalScope {
  void (*prev_int)(int), (*prev_term)(int), (*prev_usr1)(int);
  StopSignalScope() {
    g_stop_signal.store(0);
    prev_int = std::signal(SIGINT, on_stop_signal);
    prev_term = std::signal(SIGTERM, on_stop_signal);
    prev_usr1 = std::signal(SIGUSR1, on_stop_signal);  // what mpirun forwards to the ranks
  }
  ~StopSignalScope() {
    std::signal(SIGINT, prev_int);
    std::signal(SIGTERM, prev_term);
    std::signal(SIGUSR1, prev_usr1);
  }
};

// MODU_TEST_PAUSE_IN_SAVE=RANK:STEP:POINT (tests/parallel/test_faults.cpp): rank RANK, saving step STEP,
// stops at the checkpoint layer's fault-hook POINT (shard_written; on rank 0 also indexes_checked,
// manifest_written, renamed, latest_written), says so on stderr with its pid and waits there to be killed:
// a rank killed mid-save, deterministically. Unset: no hook.
std::function<void(std::string_view)> pause_in_save_hook(int rank, int64_t step) {
  const char* spec = std::getenv("MODU_TEST_PAUSE_IN_SAVE");
  if (spec == nullptr || *spec == 0) return nullptr;
  int want_rank = -1;
  long long want_step = -1;
  char point[64] = {0};
  MODU_CHECK(std::sscanf(spec, "%d:%lld:%63s", &want_rank, &want_step, point) == 3, "MODU_TEST_PAUSE_IN_SAVE = \"",
             spec, "\": expected RANK:STEP:POINT, e.g. 1:6:shard_written");
  if (want_rank != rank || want_step != step) return nullptr;
  return [rank, step, at = std::string(point)](std::string_view reached) {
    if (reached != at) return;
    const std::string line = "modu: MODU_TEST_PAUSE_IN_SAVE: rank " + std::to_string(rank) + " (pid " +
                             std::to_string(::getpid()) + ") paused in the save of step " + std::to_string(step) +
                             " at " + at + "\n";
    [[maybe_unused]] ssize_t written = ::write(2, line.data(), line.size());
    for (;;) ::pause();  // until SIGKILL
  };
}

gpt::GptConfig model_config(const Config& c) {
  gpt::GptConfig m;
  m.arch = c.get<std::string>("model.arch");
  m.vocab_size = c.get<int64_t>("model.vocab_size");
  m.pad_vocab_to = c.get<int64_t>("model.pad_vocab_to");
  m.n_layer = c.get<int64_t>("model.n_layer");
  m.n_head = c.get<int64_t>("model.n_head");
  m.n_kv_head = c.get<int64_t>("model.n_kv_head");
  m.n_embd = c.get<int64_t>("model.n_embd");
  m.block_size = c.get<int64_t>("model.block_size");
  m.ffn_hidden = c.get<int64_t>("model.ffn_hidden");
  m.dropout = c.get<double>("model.dropout");
  m.rope_theta = c.get<double>("model.rope_theta");
  m.norm_eps = c.get<double>("model.norm_eps");
  m.recompute = c.get<bool>("model.recompute");
  m.validate();
  return m;
}

// Peak FLOP/s of the training device, for MFU. CPU: cores x 2 FMA units x SIMD width x 2 at the
// nominal clock (an upper bound; the recipe can override train.peak_tflops).
double peak_flops(const Config& c, Device device) {
  double tf = c.get<double>("train.peak_tflops");
  if (tf > 0) return tf * 1e12;
  if (device.is_cuda()) return 989e12;  // H100/H200 SXM dense bf16 (the recipe can override)
  double ghz = 2.0;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("cpu MHz", 0) == 0) {
      ghz = std::stod(line.substr(line.find(':') + 1)) / 1000.0;
      break;
    }
  }
#if defined(__AVX512F__)
  double lanes = 16;
#elif defined(__AVX2__)
  double lanes = 8;
#else
  double lanes = 4;
#endif
  return omp_get_max_threads() * 2.0 * lanes * 2.0 * ghz * 1e9;
}

struct Trainer {
  const Config& cfg;
  gpt::GptConfig mc;
  Device device;
  std::unique_ptr<gpt::GPT> model;
  std::unique_ptr<parallel::DataParallel> opt;  // AdamW, replicated or ZeRO-sharded over DP
  std::unique_ptr<gpt::PipelineStage> pipeline;  // parallel.pp > 1: this rank's stage
  // The job: the world communicator, its DP x TP x PP mesh and this rank's groups. The DP group's
  // gradients go through grad_comm (the DP group itself on CPU, NCCL over it on CUDA).
  parallel::Communicator* world = nullptr;
  std::unique_ptr<parallel::Mesh> mesh;
  parallel::MeshGroups groups;
  std::unique_ptr<parallel::Communicator> nccl;
  parallel::Communicator* grad_comm = nullptr;
  int rank = 0, dp_rank = 0, dp_size = 1, zero = 0;
  bool sequence_parallel = false;  // parallel.sequence_parallel with parallel.tp > 1
  bool chief = true;     // rank 0: prints, writes metrics, commits checkpoints
  std::string save_tag;  // the temp-folder tag every rank of a save shares (rank 0's pid)
  std::unique_ptr<data::TokenLoader> train_loader, val_loader;
  optim::LrSchedule schedule;
  fs::path out_dir, ckpt_root;
  int64_t steps = 0, batch = 0, micro = 0, seq_len = 0, start_step = 0;
  int64_t parameter_count = 0, flops_per_token = 0;  // of the whole model (under PP before other stages are freed)
  uint64_t seed = 0;
  DType compute_dtype = DType::F32;  // autocast compute dtype (F32: off)
  MetricsWriter metrics;
  std::string tokenizer_spec;

  explicit Trainer(const Config& c) : cfg(c) {}

  void setup() {
    int64_t threads = cfg.get<int64_t>("train.threads");
    if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
    world = &parallel::world();
    rank = world->rank();
    chief = rank == 0;
    const int64_t tp = cfg.get<int64_t>("parallel.tp"), pp = cfg.get<int64_t>("parallel.pp");
    MODU_CHECK(tp == 1 || parse_device(cfg.get<std::string>("train.device")).is_cpu(), "parallel.tp = ", tp,
               ": tensor-parallel collectives run over MPI on the CPU only for now; set train.device = cpu");
    zero = static_cast<int>(cfg.get<int64_t>("parallel.zero"));
    MODU_CHECK(zero >= 0 && zero <= 2, "parallel.zero = ", zero, ": use 0 (replicated AdamW), 1 (AdamW state "
               "sharded over data-parallel ranks) or 2 (gradients sharded too)");
    mesh = std::make_unique<parallel::Mesh>(parallel::Mesh::make(world->size(), static_cast<int>(tp),
                                                                 static_cast<int>(pp)));
    dp_rank = mesh->coord(rank).dp;
    dp_size = mesh->dp();
    mc = model_config(cfg);
    mc.tp = tp;  // the vocabulary padded to a multiple of model.pad_vocab_to x TP (vocabulary-parallel rows)
    mesh->check_model({mc.n_head, mc.n_kv_head > 0 ? mc.n_kv_head : mc.n_head, mc.n_layer, mc.padded_vocab()});
    MODU_CHECK(mc.ffn() % tp == 0, "parallel.tp = ", tp, " does not divide the MLP width ", mc.ffn(),
               " (model.ffn_hidden); choose parallel.tp dividing it");
    device = parse_device(cfg.get<std::string>("train.device"));
    if (device.is_cuda() && world->size() > 1 && cfg.get<std::string>("train.device") == "cuda")
      device = Device(DeviceType::CUDA, parallel::local_rank());  // one GPU per rank on a node
    std::string dt = cfg.get<std::string>("train.dtype");
    MODU_CHECK(dt == "f32" || dt == "bf16", "train.dtype = \"", dt,
               "\" is not supported: use f32, or bf16 (autocast: bf16 products, f32 master weights)");
    compute_dtype = dt == "bf16" ? DType::BF16 : DType::F32;
    steps = cfg.get<int64_t>("train.steps");
    batch = cfg.get<int64_t>("train.batch_size");
    micro = cfg.get<int64_t>("train.micro_batch_size");
    if (micro <= 0) micro = batch / dp_size;
    seq_len = cfg.get<int64_t>("train.seq_len");
    if (seq_len <= 0) seq_len = mc.block_size;
    MODU_CHECK(steps > 0, "train.steps must be positive, got ", steps);
    MODU_CHECK(batch > 0 && batch % micro == 0, "train.batch_size ", batch,
               " must be a positive multiple of train.micro_batch_size ", micro);
    mesh->check_batch(batch, micro);
    MODU_CHECK(pp == 1 || parse_device(cfg.get<std::string>("train.device")).is_cpu(), "parallel.pp = ", pp,
               ": pipeline stages exchange activations over MPI on the CPU only for now; set train.device = cpu");
    MODU_CHECK(pp > 1 || cfg.get<int64_t>("parallel.virtual_stages") == 1,
               "parallel.virtual_stages = ", cfg.get<int64_t>("parallel.virtual_stages"),
               " needs a pipeline: set parallel.pp > 1, or parallel.virtual_stages = 1");
    const std::string pp_schedule = cfg.get<std::string>("parallel.schedule");
    MODU_CHECK(pp_schedule == "1f1b" || pp_schedule == "interleaved", "parallel.schedule = \"", pp_schedule,
               "\": use 1f1b or interleaved");
    MODU_CHECK(seq_len <= mc.block_size, "train.seq_len ", seq_len, " exceeds model.block_size ", mc.block_size);
    // With parallel.tp = 1 there is nothing to split: the key is accepted and changes nothing.
    sequence_parallel = cfg.get<bool>("parallel.sequence_parallel") && tp > 1;
    MODU_CHECK(!sequence_parallel || seq_len % tp == 0, "parallel.sequence_parallel: train.seq_len ", seq_len,
               " is not divisible by parallel.tp = ", tp,
               "; each TP rank holds seq_len / tp positions: choose "
               "train.seq_len a multiple of parallel.tp, or set parallel.sequence_parallel = false");
    seed = static_cast<uint64_t>(cfg.get<int64_t>("train.seed"));

    std::string train_spec = cfg.get<std::string>("data.train");
    MODU_CHECK(!train_spec.empty(), "data.train is empty: point it at token shards written by `modu prepare text`");
    train_loader = std::make_unique<data::TokenLoader>(train_spec, "train",
                                                       data::TokenLoaderOptions{seq_len, seed, true});
    MODU_CHECK(train_loader->data().vocab_size() <= static_cast<uint32_t>(mc.vocab_size), "data.train's vocabulary (",
               train_loader->data().vocab_size(), " tokens) is larger than model.vocab_size ", mc.vocab_size);
    std::string val_spec = cfg.get<std::string>("data.val");
    if (!val_spec.empty())
      val_loader = std::make_unique<data::TokenLoader>(val_spec, "val", data::TokenLoaderOptions{seq_len, seed, false});
    tokenizer_spec = cfg.get<std::string>("data.tokenizer");
    if (tokenizer_spec != "gpt2" && !tokenizer_spec.empty() && fs::exists(tokenizer_spec))
      tokenizer_spec = fs::absolute(tokenizer_spec).string();

    model = std::make_unique<gpt::GPT>(mc);
    model->init_weights(seed);  // every rank: the same weights from the global seed
    model->to(device);
    parameter_count = model->parameter_count();  // of the whole model, before TP shards or PP frees it
    flops_per_token = model->flops_per_token(seq_len);
    groups = parallel::make_groups(*world, *mesh);
    grad_comm = groups.dp.get();
    model->shard_tensor_parallel(*groups.tp, sequence_parallel);  // TP: each block's matrices become this rank's shard
    if (pp > 1)  // refuses bad layouts (chunks > layers, micro-batches vs schedule) before any work
      pipeline = std::make_unique<gpt::PipelineStage>(
          *model, *groups.pp, cfg.get<std::string>("parallel.schedule"),
          static_cast<int>(cfg.get<int64_t>("parallel.virtual_stages")), static_cast<int>(batch / (micro * dp_size)));
    const std::string comm_kind = cfg.get<std::string>("parallel.comm");
    MODU_CHECK(comm_kind == "auto" || comm_kind == "nccl", "parallel.comm = \"", comm_kind,
               "\": use auto (MPI on CPU, NCCL on CUDA when there are several DP ranks) or nccl");
    MODU_CHECK(comm_kind != "nccl" || device.is_cuda(), "parallel.comm = \"nccl\" carries CUDA tensors: set "
               "train.device = cuda, or parallel.comm = auto for the CPU (MPI)");
    if ((device.is_cuda() && dp_size > 1) || comm_kind == "nccl") {
      nccl = parallel::make_nccl_communicator(*groups.dp, device);
      grad_comm = nccl.get();
    }
    save_tag = std::to_string(static_cast<int64_t>(world->max(chief ? static_cast<double>(::getpid()) : 0.0)));
    optim::AdamWConfig oc;
    oc.lr = cfg.get<double>("optim.lr");
    oc.beta1 = cfg.get<double>("optim.beta1");
    oc.beta2 = cfg.get<double>("optim.beta2");
    oc.eps = cfg.get<double>("optim.eps");
    oc.weight_decay = cfg.get<double>("optim.weight_decay");
    parallel::DataParallelOptions dpo;
    dpo.zero = zero;
    dpo.bucket_mb = cfg.get<double>("parallel.bucket_mb");
    dpo.force_communication = comm_kind == "nccl";  // the whole DP path, even on one GPU
    std::vector<nn::ParamRef> owned = pipeline ? pipeline->parameters() : model->parameters();
    if (tp > 1 && mesh->coord(rank).tp > 0)  // the TP sum of the norm counts replicated parameters once
      for (const nn::ParamRef& p : owned) dpo.leave_out_of_norm.push_back(!gpt::tp_split_of(p.name).sharded());
    opt = std::make_unique<parallel::DataParallel>(owned, *grad_comm, oc, dpo);
    schedule.kind = cfg.get<std::string>("optim.schedule");
    schedule.warmup = cfg.get<int64_t>("optim.warmup_steps");
    schedule.total = steps;
    schedule.max_lr = oc.lr;
    schedule.min_lr = cfg.get<double>("optim.min_lr");
    (void)schedule.at(0);  // validates the kind

    out_dir = cfg.get<std::string>("train.out_dir");
    ckpt_root = out_dir / "checkpoints";
    fs::create_directories(out_dir);
    init_from();
    resume();
    if (pipeline) pipeline->sync_tied_weights();  // gpt2: the last stage's copy of wte, as loaded
    if (pipeline) pipeline->release_other_stages();  // each rank keeps its stage's weights only
    if (chief) metrics = MetricsWriter(out_dir.string());
  }

  // ---- checkpoints ------------------------------------------------------------------------------
  // Collective: every rank writes its shard (rank 0 the weights, which every DP rank holds identically;
  // the optimizer state wherever it lives), then rank 0 commits after a barrier.
  void save_checkpoint(int64_t step) {
    bool exists = world->max(chief && checkpoint::is_committed(ckpt_root, step) ? 1.0 : 0.0) > 0;
    if (exists) return;  // already saved at this step
    std::vector<checkpoint::ShardTensor> tensors;
    const std::vector<nn::ParamRef>& params = opt->params();
    const bool stage_writer = dp_rank == 0;  // rank 0, or DP rank 0 of each pipeline stage: its stage's tensors
    if (mesh->tp() > 1) {  // global tensors, weights and optimizer state, written by TP rank 0 of DP rank 0
      gather_tp_tensors(tensors, stage_writer && mesh->coord(rank).tp == 0);
    } else if (stage_writer) {
      for (const nn::ParamRef& p : params) tensors.emplace_back("model/" + p.name, *p.tensor);
    }
    if (mesh->tp() > 1) {
      // the optimizer state too, by gather_tp_tensors
    } else if (!opt->sharded()) {  // replicated: rank 0 writes it, shaped like the parameters
      if (stage_writer)
        for (const parallel::StatePiece& piece : opt->optimizer_pieces()) {
          tensors.emplace_back("optim/m/" + params[piece.param].name, piece.m);
          tensors.emplace_back("optim/v/" + params[piece.param].name, piece.v);
        }
    } else {  // ZeRO: each rank its flat ranges of each parameter's state
      for (const parallel::StatePiece& piece : opt->optimizer_pieces()) {
        const std::string& name = params[piece.param].name;
        Dims global{params[piece.param].tensor->numel()}, offset{piece.begin};
        tensors.emplace_back("optim/m/" + name, piece.m, global, offset);
        tensors.emplace_back("optim/v/" + name, piece.v, global, offset);
      }
    }
    checkpoint::SaveOptions so;
    so.tag = save_tag;
    so.fault_hook = pause_in_save_hook(rank, step);
    // The rank's random state: dropout masks are keyed by the seed and the global sample index (gpt::DropoutKey),
    // the same on every rank and layout, so resume needs only the data position; recorded for the reader.
    const json rank_state{{"dropout", {{"seed", seed}, {"keyed_by", "global sample index"}}}};
    checkpoint::write_shard(ckpt_root, step, rank, tensors, rank_state, so);
    world->barrier();
    if (chief) {
      checkpoint::CommitInfo info;
      info.metadata = json{{"step", step},
                           {"optimizer_steps", opt->steps_taken()},
                           {"data", {{"position", train_loader->position()}, {"seed", seed}, {"seq_len", seq_len}}},
                           {"model", gpt::config_to_json(mc)},
                           {"tokenizer", tokenizer_spec},
                           {"recipe", cfg.effective_toml()},
                           {"lr_schedule", {{"kind", schedule.kind}, {"warmup", schedule.warmup},
                                            {"total", schedule.total}, {"max_lr", schedule.max_lr},
                                            {"min_lr", schedule.min_lr}}}};
      info.layout = json{{"world_size", world->size()}, {"dp", dp_size}, {"tp", mesh->tp()}, {"pp", mesh->pp()},
                         {"zero", zero},
                         {"optimizer_state", opt->sharded() && mesh->tp() == 1 ? "flat" : "shaped"}};
      checkpoint::commit(ckpt_root, step, world->size(), info, so);
      int64_t keep = cfg.get<int64_t>("train.keep_checkpoints");
      if (keep > 0) checkpoint::retain_last(ckpt_root, static_cast<int>(keep));
      std::cout << "checkpoint: " << (ckpt_root / checkpoint::step_dir_name(step)).string() << std::endl;
    }
    world->barrier();  // nobody goes on (or exits) before the commit
  }

  // Tensor parallelism: every parameter and its AdamW m, v as global tensors, shaped (ZeRO pieces summed over the
  // DP group first: they are disjoint and the rest is zero, so the sum is exact; then the TP shards gathered).
  // Vocabulary-sized tensors keep one process's rows (GptConfig::stored_vocab): the rows of the TP padding beyond
  // are zero (never looked up, no loss, so no gradient, and AdamW keeps zero at zero), so a checkpoint is the same
  // whatever the layout. Collective over the TP and DP groups; `writer` keeps them for its shard.
  void gather_tp_tensors(std::vector<checkpoint::ShardTensor>& tensors, bool writer) {
    NoGradGuard no_grad;
    const std::vector<nn::ParamRef>& params = opt->params();
    std::vector<Tensor> m, v;
    for (const nn::ParamRef& p : params) {
      m.push_back(Tensor::zeros(p.tensor->shape(), DType::F32, p.tensor->device()));
      v.push_back(Tensor::zeros(p.tensor->shape(), DType::F32, p.tensor->device()));
    }
    for (const parallel::StatePiece& piece : opt->optimizer_pieces()) {
      const int64_t n = piece.end - piece.begin;
      m[piece.param].view(Dims{-1}).slice(0, piece.begin, piece.end).copy_(piece.m.reshape(Dims{n}));
      v[piece.param].view(Dims{-1}).slice(0, piece.begin, piece.end).copy_(piece.v.reshape(Dims{n}));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      if (opt->sharded()) {
        groups.dp->all_reduce(m[i], parallel::ReduceOp::Sum);
        groups.dp->all_reduce(v[i], parallel::ReduceOp::Sum);
      }
      const gpt::TpSplit split = gpt::tp_split_of(params[i].name);
      Tensor w = gpt::tp_unshard(*params[i].tensor, split, *groups.tp);
      Tensor mg = gpt::tp_unshard(m[i], split, *groups.tp), vg = gpt::tp_unshard(v[i], split, *groups.tp);
      if (!writer) continue;
      if (gpt::is_vocab_param(params[i].name)) {  // one process's rows: the TP padding beyond is zero
        w = gpt::with_rows(w, mc.stored_vocab());
        mg = gpt::with_rows(mg, mc.stored_vocab());
        vg = gpt::with_rows(vg, mc.stored_vocab());
      }
      tensors.emplace_back("model/" + params[i].name, w);
      tensors.emplace_back("optim/m/" + params[i].name, mg);
      tensors.emplace_back("optim/v/" + params[i].name, vg);
    }
  }

  // The checkpoint's global tensor `name` (of parameter `param`) into `dest`: this rank's TP shard of it. A
  // vocabulary-sized tensor stored with other padding rows is brought to this run's padded vocabulary first.
  void read_tp_shard(const checkpoint::Checkpoint& ck, const std::string& name, const std::string& param,
                     Tensor& dest) const {
    const bool vocab = gpt::is_vocab_param(param);
    if (mesh->tp() == 1 && !(vocab && ck.has(name) && ck.global_shape(name)[0] != mc.padded_vocab())) {
      ck.read(name, dest);
      return;
    }
    NoGradGuard no_grad;
    Tensor full = ck.read(name);
    if (vocab) full = gpt::with_rows(full, mc.padded_vocab());
    Tensor shard = gpt::tp_shard(full, gpt::tp_split_of(param), mesh->tp(), mesh->coord(rank).tp);
    MODU_CHECK(shard.shape() == dest.shape(), "checkpoint ", ck.dir().string(), ": ", name, " gives a TP shard of ",
               shard.shape().str(), ", the parameter's is ", dest.shape().str());
    dest.copy_(shard.to(dest.device()));
  }

  // Elements [begin, end) of the flattened optimizer state `name` of a parameter shaped `shape` into
  // `dest`, from a checkpoint that stored it shaped (one process, ZeRO-0) or flat (ZeRO-1/2).
  static void read_state(const checkpoint::Checkpoint& ck, const std::string& name, const Tensor& dest,
                         int64_t begin, int64_t end, const Dims& shape) {
    MODU_CHECK(ck.has(name), "resume: the checkpoint ", ck.dir().string(), " lacks ", name,
               "; it was not written by this recipe");
    const Dims stored = ck.global_shape(name);
    const int64_t numel = shape.numel();
    if (stored.size() == 1 && stored[0] == numel) {
      ck.read(name, dest.view(Dims{end - begin}), Dims{begin});
    } else {
      MODU_CHECK(stored == shape, "resume: ", name, " in ", ck.dir().string(), " has shape ", stored.str(),
                 " but the parameter has ", shape.str());
      if (begin == 0 && end == numel && dest.shape() == shape) {
        ck.read(name, dest);
      } else {
        NoGradGuard no_grad;
        dest.view(Dims{end - begin}).copy_(ck.read(name).reshape(Dims{-1}).slice(0, begin, end).to(dest.device()));
      }
    }
  }

  void resume() {
    std::string mode = cfg.get<std::string>("train.resume");
    fs::path from;
    if (mode == "never" || mode == "false") return;
    if (mode == "auto" || mode == "true") {
      if (!fs::exists(ckpt_root / "latest")) return;
      from = ckpt_root;
    } else {
      from = mode;
    }
    checkpoint::OpenOptions oo;
    if (world->size() > 1) oo.verify = checkpoint::ShardVerify::OnFirstUse;  // each rank hashes what it reads
    checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(from, oo);
    const json& meta = ck.metadata();
    json saved_model = meta.at("model");
    MODU_CHECK(saved_model == gpt::config_to_json(mc), "resume: the checkpoint ", ck.dir().string(),
               " holds a different model (", saved_model.dump(), ") than the recipe (", gpt::config_to_json(mc).dump(),
               "); use the recipe it was trained with, or set train.resume = \"never\" with a new train.out_dir");
    NoGradGuard no_grad;
    const std::vector<nn::ParamRef>& params = opt->params();
    for (const nn::ParamRef& p : params) read_tp_shard(ck, "model/" + p.name, p.name, *p.tensor);
    for (const parallel::StatePiece& piece : opt->optimizer_pieces()) {
      const nn::ParamRef& p = params[piece.param];
      // The stored global shape (vocabulary-sized: one process's padding, or whatever the writer had).
      const Dims global = ck.global_shape("model/" + p.name);
      const bool vocab_rows_differ = gpt::is_vocab_param(p.name) && global[0] != mc.padded_vocab();
      if (mesh->tp() == 1 && !vocab_rows_differ) {
        read_state(ck, "optim/m/" + p.name, piece.m, piece.begin, piece.end, p.tensor->shape());
        read_state(ck, "optim/v/" + p.name, piece.v, piece.begin, piece.end, p.tensor->shape());
        continue;
      }
      // The stored global state (shaped, or flat ZeRO pieces seen in that shape), its vocabulary rows brought to
      // this run's padding (the rows added or dropped are zero), this rank's TP shard, the piece's flat range.
      const gpt::TpSplit split = gpt::tp_split_of(p.name);
      const int64_t n = piece.end - piece.begin;
      for (const auto& [state, dest] : {std::pair{"optim/m/", piece.m}, std::pair{"optim/v/", piece.v}}) {
        Tensor full = Tensor::zeros(global, DType::F32, dest.device());
        read_state(ck, state + p.name, full, 0, global.numel(), global);
        if (vocab_rows_differ) full = gpt::with_rows(full, mc.padded_vocab());
        Tensor local = gpt::tp_shard(full, split, mesh->tp(), mesh->coord(rank).tp);
        dest.reshape(Dims{n}).copy_(local.reshape(Dims{-1}).slice(0, piece.begin, piece.end));
      }
    }
    opt->set_steps_taken(meta.at("optimizer_steps").get<int64_t>());
    start_step = meta.at("step").get<int64_t>();
    train_loader->set_position(meta.at("data").at("position").get<uint64_t>());
    const json& layout = ck.layout();
    std::cout << "resumed from " << ck.dir().string() << " at step " << start_step;
    if (layout.contains("dp") && (layout.at("dp") != dp_size || layout.value("zero", 0) != zero))
      std::cout << " (saved under DP" << layout.at("dp") << " ZeRO-" << layout.value("zero", 0) << ", now DP"
                << dp_size << " ZeRO-" << zero << ": optimizer state re-sliced)";
    if (layout.value("tp", 1) != mesh->tp())  // tensors are stored global: each TP rank slices its shard
      std::cout << " (saved under TP" << layout.value("tp", 1) << ", now TP" << mesh->tp()
                << ": matrices re-sliced over the TP ranks)";
    if (layout.value("pp", 1) != mesh->pp())  // tensors are stored by global name: each stage reads its own
      std::cout << " (saved under PP" << layout.value("pp", 1) << ", now PP" << mesh->pp()
                << ": layers re-partitioned over the stages)";
    std::cout << std::endl;
  }

  // train.init_from: start from another checkpoint's weights only (e.g. `modu import hf` output):
  // fresh optimizer, step 0, data from the start. A resumable checkpoint of this run wins (resume()).
  void init_from() {
    fs::path from = cfg.get<std::string>("train.init_from");
    if (from.empty()) return;
    if (fs::exists(from / "checkpoints" / "latest")) from /= "checkpoints";  // a run folder
    checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(from);
    const json saved = ck.metadata().at("model"), mine = gpt::config_to_json(mc);
    for (const char* key : {"arch", "norm_eps", "rope_theta"})
      MODU_CHECK(saved.at(key) == mine.at(key), "train.init_from: ", ck.dir().string(), " has model.", key, " = ",
                 saved.at(key).dump(), " but the recipe has ", mine.at(key).dump(), "; set the recipe's model.* to ",
                 saved.dump());
    NoGradGuard no_grad;
    for (const nn::ParamRef& p : model->parameters()) {
      const std::string name = "model/" + p.name;
      Dims want = p.tensor->shape();  // the global shape (TP: the shard's, times the TP size along its split)
      if (gpt::tp_split_of(p.name).sharded()) want[gpt::tp_split_of(p.name).dim] *= mesh->tp();
      // Vocabulary rows: the same vocabulary, any padding (the rows beyond model.vocab_size are zero).
      if (gpt::is_vocab_param(p.name) && ck.has(name) && saved.at("vocab_size") == mine.at("vocab_size"))
        want[0] = ck.global_shape(name)[0];
      MODU_CHECK(ck.has(name) && ck.global_shape(name) == want, "train.init_from: ",
                 ck.dir().string(), (ck.has(name) ? " has a different shape for " : " lacks "), name,
                 " than the recipe's model; set the recipe's model.* to ", saved.dump());
      read_tp_shard(ck, name, p.name, *p.tensor);
    }
    std::cout << "initialised the weights from " << ck.dir().string() << std::endl;
  }

  // ---- evaluation and samples -----------------------------------------------------------------
  // Rank 0 evaluates; under PP, DP rank 0 of every stage (the forward runs through the stages).
  // Under TP, DP rank 0 of every TP rank (the forward runs over the TP group).
  bool evaluates() const { return chief || ((pipeline || mesh->tp() > 1) && dp_rank == 0); }
  double evaluate() {
    if (!val_loader) return std::numeric_limits<double>::quiet_NaN();
    NoGradGuard no_grad;
    model->set_training(false);
    int64_t batches = std::min<int64_t>(cfg.get<int64_t>("train.eval_batches"),
                                        static_cast<int64_t>(val_loader->batches_per_epoch(micro)));
    MODU_CHECK(batches > 0, "the validation split holds fewer than ", micro, " sequences of ", seq_len,
               " tokens: lower train.micro_batch_size or train.seq_len, or prepare more val data");
    double total = 0;
    for (int64_t b = 0; b < batches && pipeline; ++b) {  // through the stages; the last one's loss
      data::TokenBatch tb = val_loader->batch_at(static_cast<uint64_t>(b * micro), micro);
      total += pipeline->forward_loss(tb.inputs, tb.targets, compute_dtype);
    }
    if (pipeline) total = groups.pp->sum(total);
    for (int64_t b = 0; b < batches && !pipeline; ++b) {
      data::TokenBatch tb = val_loader->batch_at(static_cast<uint64_t>(b * micro), micro);
      nn::AutocastGuard autocast(compute_dtype);
      Tensor logits = model->forward(tb.inputs.to(device));
      total += model->loss(logits, tb.targets.to(device)).item();
    }
    model->set_training(true);
    return total / static_cast<double>(batches);
  }

  void print_sample() {
    std::string prompt = cfg.get<std::string>("train.sample_prompt");
    int64_t n = cfg.get<int64_t>("train.sample_tokens");
    if (prompt.empty() || n <= 0 || tokenizer_spec.empty()) return;
    data::BpeTokenizer tok = data::load_tokenizer(tokenizer_spec);
    gpt::SamplingOptions so;
    so.max_new_tokens = n;
    so.temperature = 0.8;
    so.top_k = 40;
    so.seed = seed;
    std::vector<int32_t> ids = tok.encode(prompt);
    std::vector<int32_t> out = gpt::sample(*model, ids, so);
    std::cout << "sample: " << prompt << tok.decode(out) << std::endl;
  }

  // ---- the loop ---------------------------------------------------------------------------------
  int run() {
    StopSignalScope signals;
    int64_t accum = batch / (micro * dp_size);  // micro-batches per step on each DP rank
    int64_t log_every = std::max<int64_t>(1, cfg.get<int64_t>("train.log_every"));
    int64_t eval_every = cfg.get<int64_t>("train.eval_every");
    int64_t ckpt_every = cfg.get<int64_t>("train.checkpoint_every");
    int64_t sample_every = cfg.get<int64_t>("train.sample_every");
    double grad_clip = cfg.get<double>("optim.grad_clip");
    int64_t stop_after = cfg.get<int64_t>("train.stop_after");
    double peak = peak_flops(cfg, device) * world->size();  // the job's peak: every rank's
    std::vector<nn::ParamRef> params = model->parameters();
    std::cout << "model: " << mc.arch << ", " << parameter_count << " parameters (vocabulary padded to "
              << mc.padded_vocab() << "), " << params.size() << " tensors; device " << device.str() << ", "
              << omp_get_max_threads() << " CPU threads" << std::endl;
    std::cout << "data: " << train_loader->data().description() << ", " << train_loader->data().size() << " tokens, "
              << train_loader->num_samples() << " sequences of " << seq_len << "; " << batch << " sequences per step ("
              << accum << " x " << micro << (dp_size > 1 ? " on each of " + std::to_string(dp_size) + " DP ranks" : "")
              << ")" << std::endl;
    if (world->size() > 1)
      std::cout << "layout: " << mesh->describe() << (sequence_parallel ? ", sequence parallel" : "") << ", ZeRO-"
                << zero << ", " << opt->num_buckets() << " gradient buckets, " << grad_comm->backend() << "\n"
                << mesh->draw() << std::flush;
    if (pipeline)
      std::cout << "pipeline: " << cfg.get<std::string>("parallel.schedule") << ", " << pipeline->stages()
                << " stages x " << cfg.get<int64_t>("parallel.virtual_stages") << " chunks, " << accum
                << " micro-batches per step; stage 0 holds layers [" << pipeline->layers(0).first << ", "
                << pipeline->layers(0).second << ") of chunk 0 and " << model->parameter_count() << " of the "
                << parameter_count << " parameters" << std::endl;
    if (start_step == 0 && evaluates()) {
      double v = evaluate();
      if (!std::isnan(v) && chief) {
        metrics.write(json{{"step", 0}, {"val_loss", v}});
        std::cout << "step 0/" << steps << " | val_loss " << v << std::endl;
      }
    }
    auto run_start = std::chrono::steady_clock::now();
    double window_time = 0;
    int64_t window_tokens = 0;
    for (int64_t step = start_step; step < steps; ++step) {
      auto t0 = std::chrono::steady_clock::now();
      double lr = schedule.at(step);
      const int64_t bytes_before = grad_comm->bytes_sent();
      model->zero_grad();
      double loss_sum = 0, pp_wait = 0, pp_time = 0;
      if (pipeline) {  // the step's micro-batches through the schedule, then DP averaging in one go
        std::vector<data::TokenBatch> micro_batches;
        for (int64_t a = 0; a < accum; ++a)  // every stage reads them, so every loader stays in step
          micro_batches.push_back(train_loader->next_local_batch(micro, dp_rank, dp_size));
        auto f0 = std::chrono::steady_clock::now();
        // DP: the gradient hooks armed before each stage's last backward average buckets while it runs.
        loss_sum = pipeline->forward_backward(micro_batches, compute_dtype, [&] { opt->prepare_backward(true); });
        pp_time = std::chrono::duration<double>(std::chrono::steady_clock::now() - f0).count();
        pp_wait = pipeline->wait_seconds;
      }
      for (int64_t a = 0; a < accum && !pipeline; ++a) {
        // This rank's micro-batch of the global samples [g, g + dp_size * micro); g advances by all of them.
        data::TokenBatch tb = train_loader->next_local_batch(micro, dp_rank, dp_size);
        model->set_dropout_samples(tb.first_sample);
        Tensor loss;
        {
          nn::AutocastGuard autocast(compute_dtype);  // bf16 products; parameters and .grad stay f32
          Tensor logits = model->forward(tb.inputs.to(device));
          loss = model->loss(logits, tb.targets.to(device));
        }
        loss_sum += loss.item();
        Tensor scaled = accum > 1 ? mul_scalar(loss, 1.0 / static_cast<double>(accum)) : loss;
        opt->prepare_backward(a == accum - 1);  // DP: gradients averaged during the last backward only
        scaled.backward();
      }
      opt->finish_gradient_sync();
      double gnorm = opt->grad_norm();  // of the DP-averaged gradient
      if (pipeline) gnorm = std::sqrt(groups.pp->sum(gnorm * gnorm));  // over the stages' parameters
      if (mesh->tp() > 1) gnorm = std::sqrt(groups.tp->sum(gnorm * gnorm));  // shards; replicated ones once
      opt->step(lr, optim::clip_coefficient(gnorm, grad_clip));  // clipping folded into the update
      if (pipeline) pipeline->sync_tied_weights();
      // The global mean loss, and whether any rank was asked to stop (all ranks stop at the same step).
      // Under PP only the last stages hold losses; the pipeline's receive waits and forward-backward time
      // (summed over the ranks) give the measured bubble.
      const bool has_loss = !pipeline || pipeline->last();
      Tensor agreed = Tensor::from_vector(std::vector<double>{has_loss ? loss_sum / static_cast<double>(accum) : 0.0,
                                                              g_stop_signal.load() != 0 ? 1.0 : 0.0, pp_wait, pp_time},
                                          Dims{4});
      world->all_reduce(agreed, parallel::ReduceOp::Sum);
      double loss = agreed.data<double>()[0] / static_cast<double>(world->size() / mesh->pp());
      bool signalled = agreed.data<double>()[1] > 0;
      const int64_t step_bytes = grad_comm->bytes_sent() - bytes_before;  // this rank's DP traffic
      MODU_CHECK(std::isfinite(loss), "training diverged at step ", step + 1, ": loss is ", loss,
                 "; lower optim.lr or check the data");
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      window_time += dt;
      window_tokens += batch * seq_len;
      int64_t done = step + 1;
      bool last = done == steps;
      bool stop = signalled || done == stop_after;
      if (done % log_every == 0 || last || step == start_step || stop) {
        double tps = window_tokens / window_time;
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
        double eta = elapsed / static_cast<double>(done - start_step) * static_cast<double>(steps - done);
        Progress p{done, steps, loss, lr, gnorm, tps, tps * flops_per_token / peak, eta};
        std::cout << format_progress(p) << std::endl;
        if (chief) {
          json record{{"step", done},       {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"tokens_per_s", tps},
                      {"mfu", tps * flops_per_token / peak}, {"elapsed_s", elapsed}};
          if (dp_size > 1) {  // for bench/parallel: DP bytes sent by rank 0 and its AdamW state
            record["dp_bytes_sent"] = step_bytes;
            record["optimizer_state_bytes"] = opt->optimizer_state_bytes();
            const parallel::OverlapStats& ov = opt->overlap();  // rank 0's gradient communication vs backward
            record["dp_backward_s"] = ov.backward_s;
            record["dp_comm_s"] = ov.comm_s;
            record["dp_exposed_s"] = ov.exposed_s;
            record["dp_hidden_fraction"] = ov.hidden_fraction();
            if (opt->sharded()) record["dp_gather_s"] = ov.gather_s;
          }
          if (pipeline) {  // for bench/parallel: mean receive wait and forward-backward time per rank
            record["pp_wait_s"] = agreed.data<double>()[2] / world->size();
            record["pp_forward_backward_s"] = agreed.data<double>()[3] / world->size();
          }
          metrics.write(record);
        }
        window_time = 0;
        window_tokens = 0;
      }
      if (evaluates() && ((eval_every > 0 && done % eval_every == 0) || last)) {
        double v = evaluate();
        if (!std::isnan(v) && chief) {
          metrics.write(json{{"step", done}, {"val_loss", v}});
          std::cout << "step " << done << "/" << steps << " | val_loss " << v << std::endl;
        }
      }
      if (chief && !pipeline && mesh->tp() == 1 && sample_every > 0 && (done % sample_every == 0 || last)) print_sample();
      if ((ckpt_every > 0 && done % ckpt_every == 0) || last || stop) save_checkpoint(done);
      if (stop) {
        if (signalled)  // this rank's signal, or another rank's (the stop flag is agreed on above)
          std::cout << "stopped by "
                    << (g_stop_signal.load() != 0 ? "signal " + std::to_string(g_stop_signal.load())
                                                  : std::string("a signal to another rank"))
                    << " after step " << done << "; resume with the same command" << std::endl;
        else
          std::cout << "stopped after step " << done << " (train.stop_after); resume with the same command"
                    << std::endl;
        return 0;
      }
    }
    return 0;
  }
};

}  // namespace

void declare_recipe_schema(Config& c) {
  // model
  c.declare<std::string>("model.arch", "gpt2", "gpt2 | llama");
  c.declare<int64_t>("model.vocab_size", 50257, "tokens in the vocabulary");
  c.declare<int64_t>("model.pad_vocab_to", 128, "embedding rows padded to a multiple of this");
  c.declare<int64_t>("model.n_layer", 12, "transformer blocks");
  c.declare<int64_t>("model.n_head", 12, "attention heads");
  c.declare<int64_t>("model.n_kv_head", 0, "llama: key/value heads for grouped-query attention (0 = n_head)");
  c.declare<int64_t>("model.n_embd", 768, "model width C");
  c.declare<int64_t>("model.block_size", 1024, "maximum context length");
  c.declare<int64_t>("model.ffn_hidden", 0, "llama: SwiGLU width (0 = 8C/3 rounded up to 64)");
  c.declare<double>("model.dropout", 0.0, "dropout probability (embeddings and residual branches)");
  c.declare<double>("model.rope_theta", 10000.0, "llama: rotary base");
  c.declare<double>("model.norm_eps", 1e-5, "epsilon of LayerNorm / RMSNorm");
  c.declare<bool>("model.recompute", false, "recompute each block's activations in backward instead of storing them");
  // data
  c.declare<std::string>("data.train", "", "training token shards (`modu prepare text` output: DIR/train, DIR or a glob)");
  c.declare<std::string>("data.val", "", "validation token shards (empty: no evaluation)");
  c.declare<std::string>("data.tokenizer", "gpt2", "tokenizer for samples: gpt2 or a `modu prepare tokenizer` folder");
  // train
  c.declare<int64_t>("train.steps", 1000, "optimizer steps");
  c.declare<int64_t>("train.batch_size", 8, "sequences per optimizer step (global)");
  c.declare<int64_t>("train.micro_batch_size", 0, "sequences per forward/backward on each data-parallel rank (0 = batch_size / DP)");
  c.declare<int64_t>("train.seq_len", 0, "tokens per sequence (0 = model.block_size)");
  c.declare<std::string>("train.out_dir", "runs/gpt", "metrics.jsonl and checkpoints/ go here");
  c.declare<int64_t>("train.seed", 1337, "seed of initialisation, data order and dropout");
  c.declare<int64_t>("train.log_every", 10, "steps between progress lines");
  c.declare<int64_t>("train.eval_every", 250, "steps between validation losses (0 = only at the end)");
  c.declare<int64_t>("train.eval_batches", 20, "validation batches per evaluation");
  c.declare<int64_t>("train.checkpoint_every", 500, "steps between checkpoints (0 = only at the end)");
  c.declare<int64_t>("train.keep_checkpoints", 0, "keep only the newest N checkpoints (0 = keep all)");
  c.declare<std::string>("train.init_from", "", "start from this checkpoint's weights (fresh optimizer, step 0), e.g. `modu import hf` output");
  c.declare<std::string>("train.resume", "auto", "auto (continue OUT_DIR/checkpoints/latest if any) | never | a checkpoint path");
  c.declare<std::string>("train.device", "cpu", "cpu | cuda | cuda:N");
  c.declare<std::string>("train.dtype", "f32", "f32 | bf16 (autocast: bf16 products, f32 master weights and optimizer)");
  c.declare<int64_t>("train.threads", 0, "CPU threads (0 = OpenMP's default)");
  c.declare<double>("train.peak_tflops", 0.0, "device peak for MFU (0 = estimate)");
  c.declare<int64_t>("train.stop_after", 0, "stop (with a checkpoint) after this step, as on SIGTERM (0 = run to the end)");
  c.declare<int64_t>("train.sample_every", 0, "steps between printed samples (0 = never)");
  c.declare<std::string>("train.sample_prompt", "", "prompt of the printed samples");
  c.declare<int64_t>("train.sample_tokens", 48, "tokens per printed sample");
  // optim
  c.declare<double>("optim.lr", 6e-4, "peak learning rate");
  c.declare<double>("optim.min_lr", 6e-5, "learning rate at the end of the decay");
  c.declare<int64_t>("optim.warmup_steps", 100, "linear warmup steps");
  c.declare<std::string>("optim.schedule", "cosine", "cosine | linear | constant");
  c.declare<double>("optim.beta1", 0.9, "AdamW beta1");
  c.declare<double>("optim.beta2", 0.95, "AdamW beta2");
  c.declare<double>("optim.eps", 1e-8, "AdamW epsilon");
  c.declare<double>("optim.weight_decay", 0.1, "decoupled weight decay (matrices only)");
  c.declare<double>("optim.grad_clip", 1.0, "global gradient-norm clip (0 = off)");
  // parallel (the parallel layer)
  c.declare<int64_t>("parallel.tp", 1, "tensor-parallel ranks");
  c.declare<bool>(
      "parallel.sequence_parallel", false,
      "with parallel.tp > 1: norms, dropout and residuals on T/tp positions per TP rank (all-gather / "
      "reduce-scatter along T instead of all-reduce; train.seq_len divisible by parallel.tp); no-op at tp = 1");
  c.declare<int64_t>("parallel.pp", 1, "pipeline stages");
  c.declare<int64_t>("parallel.zero", 0,
                     "ZeRO stage over data parallelism: 0 replicated AdamW, 1 AdamW state sharded, 2 gradients too");
  c.declare<double>("parallel.bucket_mb", 25.0, "data parallelism: MiB of gradient per all-reduce bucket");
  c.declare<std::string>("parallel.comm", "auto",
                         "gradient communicator: auto (MPI on CPU, NCCL on CUDA with DP > 1) | nccl (also on one GPU)");
  c.declare<std::string>("parallel.schedule", "1f1b", "pipeline schedule: 1f1b | interleaved");
  c.declare<int64_t>("parallel.virtual_stages", 1, "interleaved schedule: model chunks per stage");
}

namespace {

// Ranks other than 0 print nothing to stdout (rank 0 speaks for the job); stderr stays open to all.
struct DiscardBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};
struct MuteStdout {
  std::streambuf* saved = nullptr;
  DiscardBuffer sink;
  explicit MuteStdout(bool mute) {
    if (mute) saved = std::cout.rdbuf(&sink);
  }
  ~MuteStdout() {
    if (saved) std::cout.rdbuf(saved);
  }
};

}  // namespace

int train_main(const Config& recipe) {
  parallel::Communicator& world = parallel::world();
  if (world.size() == 1) {
    Trainer t(recipe);
    t.setup();
    return t.run();
  }
  // Under mpirun: every rank's error reaches stderr with its rank, then the whole job ends (the other
  // ranks would otherwise wait forever in their next collective).
  try {
    MuteStdout mute(world.rank() != 0);
    Trainer t(recipe);
    t.setup();
    return t.run();
  } catch (const std::exception& e) {
    // One write, so the lines of ranks failing at once do not interleave.
    const std::string line = "modu: error: rank " + std::to_string(world.rank()) + " of " +
                             std::to_string(world.size()) + ": " + e.what() + "\n";
    std::fflush(stdout);
    [[maybe_unused]] ssize_t written = ::write(2, line.data(), line.size());
    parallel::abort_job(1);
  }
}

int generate_main(const GenerateOptions& opts) {
  fs::path path = opts.checkpoint_dir;
  if (fs::exists(path / "checkpoints" / "latest")) path /= "checkpoints";  // a run folder
  checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(path);
  const json& meta = ck.metadata();
  gpt::GptConfig mc = gpt::config_from_json(meta.at("model"));
  mc.dropout = 0;
  gpt::GPT model(mc);
  {
    NoGradGuard no_grad;
    for (const nn::ParamRef& p : model.parameters()) {  // vocabulary rows: whatever padding the writer had
      if (gpt::is_vocab_param(p.name) && ck.global_shape("model/" + p.name)[0] != p.tensor->size(0))
        p.tensor->copy_(gpt::with_rows(ck.read("model/" + p.name), p.tensor->size(0)).to(p.tensor->device()));
      else
        ck.read("model/" + p.name, *p.tensor);
    }
  }
  model.set_training(false);
  std::string tok_spec = opts.tokenizer.empty() ? meta.value("tokenizer", std::string("gpt2")) : opts.tokenizer;
  data::BpeTokenizer tok = data::load_tokenizer(tok_spec);
  gpt::SamplingOptions so;
  so.max_new_tokens = opts.max_new_tokens;
  so.temperature = opts.temperature;
  so.top_k = opts.top_k;
  so.top_p = opts.top_p;
  so.seed = opts.seed;
  so.stop_token = static_cast<int32_t>(tok.eot_id());
  std::vector<int32_t> ids = tok.encode(opts.prompt);
  MODU_CHECK(!ids.empty(), "generate: the prompt is empty");
  std::vector<int32_t> out = gpt::sample(model, ids, so);
  std::cout << opts.prompt << tok.decode(out) << std::endl;
  return 0;
}

}  // namespace modu::recipes
