#!/usr/bin/env perl
# run.pl: run Kaldi-style (array) jobs on the local machine.
#
# Usage: run.pl [options] [JOB=1:N] <log-file> <command...>
#   e.g. run.pl --max_jobs_run 4 JOB=1:10 exp/log/decode.JOB.log python -m foo --part JOB
#
# The string JOB (or whatever NAME is used in NAME=a:b / NAME=a) is replaced by the job
# index in the log file name and in the command, as plain text.  The command words are
# joined the way Kaldi's run.pl does it (a word with no whitespace is used as-is, so shell
# syntax such as '|' or '>' given as separate words works; other words are quoted) and
# each job runs as `bash -c <command>` with stdin from /dev/null and stdout+stderr
# appended to its log file.  The log starts with the command and start time and ends with
#   # Accounting: time=<seconds> threads=<num_threads>
#   # Ended (code <exit status>) at <date>, elapsed time <seconds> seconds
# run.pl exits 0 if every job succeeded; otherwise it names the failed logs and exits 1.
#
# Options (also accepted as --opt=value; '-' and '_' are interchangeable):
#   --max_jobs_run N   at most N jobs at a time (default: the number of usable CPUs)
#   --num_threads N    only reported in the log footer
#   --num_nodes N      must be 1 (run.pl cannot use other machines)
#   --gpu N, --mem X, --time T, --name S, --config F, and any other option:
#                      accepted and ignored, so that the same $cmd works with slurm.pl.
#                      CUDA_VISIBLE_DEVICES is left as it is.
use strict;
use warnings;
use POSIX qw(setpgid);
use Errno qw(EINTR);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use lib dirname(abs_path($0));   # Launcher.pm lies next to the real script
use Launcher;

my $me = "run.pl";

sub num_cpus {
  # nproc counts the CPUs this process may use, but also obeys OMP_NUM_THREADS/OMP_THREAD_LIMIT,
  # which ML setups often set to 1: ignore those here.
  local %ENV = %ENV;
  delete @ENV{qw(OMP_NUM_THREADS OMP_THREAD_LIMIT)};
  my $n = `nproc 2>/dev/null`;
  return $1 if defined $n && $n =~ /^\s*(\d+)/ && $1 > 0;
  if (open(my $fh, '<', '/proc/cpuinfo')) {
    my $c = grep { /^processor\s*:/ } <$fh>;
    close($fh);
    return $c if $c > 0;
  }
  $n = `sysctl -n hw.ncpu 2>/dev/null`;
  return $1 if defined $n && $n =~ /^\s*(\d+)/ && $1 > 0;
  return 1;
}

my $cl = Launcher->parse_command_line($me,
  "--max_jobs_run N, --num_threads N, --gpu N, --mem X, --config F (others ignored)");
my %opts = (max_jobs_run => -1, num_threads => 1, num_nodes => 1, %{$cl->{opts}});
for my $o (qw(max_jobs_run num_threads num_nodes)) {
  Launcher::check_integer($o, $opts{$o}, 1);
}
if ($opts{num_nodes} > 1) {
  die "$me: --num_nodes $opts{num_nodes}: run.pl runs on this machine only; use slurm.pl\n";
}
my $max_jobs_run = $opts{max_jobs_run};
$max_jobs_run = num_cpus() if $max_jobs_run <= 0;
my $num_threads = $opts{num_threads};
my $logfile = $cl->{logfile};
my @ids = $cl->ids(undef);

# One job: runs in a forked child; returns its exit status (0 = success).
sub run_job {
  my ($id) = @_;
  my $log = $cl->subst($logfile, $id);
  my $c = $cl->subst($cl->{cmd}, $id);
  Launcher::ensure_dir(dirname($log));
  open(my $fh, '>', $log) or die "$me: cannot write log file $log: $!\n";
  print $fh Launcher::log_header($c), "#\n";
  close($fh);
  my $start = time();
  my $pid = fork();
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    setpgid(0, 0);  # own process group, so that a signal reaches the whole job
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    open(STDIN, '<', '/dev/null') or die "$me: /dev/null: $!\n";
    open(STDOUT, '>>', $log) or die "$me: cannot append to $log: $!\n";
    open(STDERR, '>&', \*STDOUT) or die "$me: dup: $!\n";
    exec('bash', '-c', $c) or die "$me: cannot run bash: $!\n";
  }
  setpgid($pid, $pid);
  my $forward = sub { my $sig = shift; kill($sig, -$pid) or kill($sig, $pid); };
  local $SIG{INT} = $forward;
  local $SIG{TERM} = $forward;
  local $SIG{HUP} = $forward;
  my $status;
  while (1) {
    my $r = waitpid($pid, 0);
    if ($r == $pid) { $status = $?; last; }
    if ($r == -1 && $! != EINTR) { $status = 255 << 8; last; }
  }
  my $elapsed = time() - $start;
  my ($code, $signal) = ($status >> 8, $status & 127);
  my $ret_str = $signal ? "code " . (128 + $signal) . "; signal $signal" : "code $code";
  Launcher::append_file($log, Launcher::log_footer($ret_str, $elapsed, $num_threads))
    or die "$me: cannot append to $log: $!\n";
  return $signal ? 128 + $signal : $code;
}

# Parent: keep up to $max_jobs_run children, each running one job.
my %running;      # pid -> job id (or '')
my @failed;       # [job id, log file] of the failed jobs
my $interrupted;
my $on_signal = sub {
  my $sig = shift;
  $interrupted = $sig;
  # INT from a terminal already reached the children (same process group).
  return if $sig eq 'INT';
  kill($sig, keys %running);
};
local $SIG{TERM} = $on_signal;
local $SIG{HUP} = $on_signal;
local $SIG{INT} = $on_signal;

sub reap_one {
  while (1) {
    my $pid = waitpid(-1, 0);
    if ($pid == -1) {
      next if $! == EINTR;
      return;
    }
    next unless exists $running{$pid};
    my $id = delete $running{$pid};
    push @failed, [$id, $cl->subst($logfile, $id eq '' ? undef : $id)] if $? != 0;
    return;
  }
}

for my $id (@ids) {
  last if $interrupted;
  reap_one() while keys(%running) >= $max_jobs_run;
  last if $interrupted;
  my $pid = fork();
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    my $ret = eval { run_job($id) };
    if (!defined $ret) { print STDERR $@; $ret = 1; }
    POSIX::_exit($ret == 0 ? 0 : 1);
  }
  $running{$pid} = defined $id ? $id : '';
}
reap_one() while keys %running;

if ($interrupted) {
  print STDERR "$me: interrupted by SIG$interrupted\n";
  exit 1;
}
my @failed_logs = map { $_->[1] } sort { ($a->[0] || 0) <=> ($b->[0] || 0) } @failed;
Launcher::exit_with_summary(scalar(@ids), @failed_logs);
