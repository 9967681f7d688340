package dataplatform.kestra;

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.stream.Collectors;

import org.slf4j.event.Level;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.kestra.core.exceptions.InputOutputValidationException;
import io.kestra.core.models.executions.Execution;
import io.kestra.core.models.executions.LogEntry;
import io.kestra.core.models.executions.TaskRun;
import io.kestra.core.models.flows.FlowSource;
import io.kestra.core.models.flows.FlowWithSource;
import io.kestra.core.models.flows.Input;
import io.kestra.core.models.flows.State;
import io.kestra.core.models.validations.ValidateConstraintViolation;
import io.kestra.core.queues.DispatchQueueInterface;
import io.kestra.core.repositories.ExecutionRepositoryInterface;
import io.kestra.core.repositories.LogDataStoreInterface;
import io.kestra.core.services.ExecutionService;
import io.micronaut.core.type.Argument;
import io.kestra.core.runners.FlowInputOutput;
import io.kestra.core.runners.TestRunner;
import io.kestra.core.runners.TestRunnerUtils;
import io.kestra.core.serializers.JacksonMapper;
import io.kestra.core.services.ExecutionOutputService;
import io.kestra.core.services.FlowService;
import io.micronaut.context.ApplicationContext;

/**
 * Kestra's engine (executor, worker controller, worker, indexer) in one JVM, without a web
 * server, on an in-memory H2 database and a local storage folder.
 *
 * <p>Start: {@code java -cp ... dataplatform.kestra.Launcher --home DIR --controller-port PORT}.
 * Once the engine runs it prints {@code {"event": "ready", "startSeconds": s}} on stdout, then
 * reads one JSON request per line on stdin and answers each with one JSON line on stdout:
 * <ul>
 * <li>{@code {"op": "validate", "source": "<flow yaml>"}}: Kestra's own validation
 * (FlowService.validate), answered with {@code {"ok": bool, "errors": [...], ...}};</li>
 * <li>{@code {"op": "run", "source": ..., "inputs": {...}, "timeoutSeconds": n}}: validates,
 * saves the flow, runs one execution to its end, answered with its state and state history,
 * task runs, flow outputs, logs and the count of log lines per level, or with
 * {@code {"error": "invalid-flow" | "bad-input" | "timeout" | ...}};</li>
 * <li>{@code {"op": "stop"}}, or the end of stdin: stops the engine and exits.</li>
 * </ul>
 * Executions run side by side: an answer carries the {@code id} of its request.
 * Every log line goes to stderr. Task processes inherit this JVM's environment.
 */
public final class Launcher {
    static final String TENANT = "main";
    private static final int MAX_LOGS_PER_TASK_RUN = 400;
    private static final int MAX_MESSAGE_CHARS = 4000;

    private final ApplicationContext context;
    private final ObjectMapper json = JacksonMapper.ofJson();

    private Launcher(ApplicationContext context) {
        this.context = context;
    }

    public static void main(String[] args) throws Exception {
        PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        System.setOut(System.err);

        Map<String, String> options = parseArgs(args);
        Path home = Path.of(Objects.requireNonNull(options.get("home"), "--home is required")).toAbsolutePath();
        int controllerPort = Integer.parseInt(Objects.requireNonNull(options.get("controller-port"), "--controller-port is required"));
        int workerThreads = Integer.parseInt(options.getOrDefault("worker-threads", "4"));
        Files.createDirectories(home.resolve("storage"));

        ObjectMapper json = JacksonMapper.ofJson();
        long started = System.nanoTime();
        ApplicationContext context;
        try {
            context = ApplicationContext.builder()
                .environments("local")
                .deduceEnvironment(false)
                .properties(engineProperties(home, controllerPort))
                .start();
            TestRunner runner = context.getBean(TestRunner.class);
            runner.setSchedulerEnabled(false);
            runner.setWorkerThread(workerThreads);
            runner.run();
        } catch (Throwable error) {
            error.printStackTrace(System.err);
            protocol.println(json.writeValueAsString(Map.of("event", "failed", "message", oneLine(error))));
            System.exit(1);
            return;
        }
        double startSeconds = (System.nanoTime() - started) / 1e9;
        protocol.println(json.writeValueAsString(Map.of("event", "ready", "startSeconds", startSeconds)));

        Launcher launcher = new Launcher(context);
        int status = launcher.serve(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)), protocol);
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(Duration.ofSeconds(20));
            } catch (InterruptedException ignored) {
                return;
            }
            System.err.println("the engine did not stop within 20 s: halting");
            Runtime.getRuntime().halt(status);
        }, "stop-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            context.close();
        } catch (Throwable error) {
            error.printStackTrace(System.err);
        }
        System.exit(status);
    }

    static Map<String, Object> engineProperties(Path home, int controllerPort) {
        Map<String, Object> properties = new HashMap<>();
        properties.put("micronaut.application.name", "kestra");
        properties.put("kestra.server-type", "STANDALONE");
        properties.put("kestra.queue.type", "memory");
        properties.put("kestra.repository.type", "memory");
        properties.put("kestra.storage.type", "local");
        properties.put("kestra.storage.local.base-path", home.resolve("storage").toString());
        properties.put("kestra.controller.port", controllerPort);
        properties.put("kestra.worker.controllers.type", "STATIC");
        properties.put("kestra.worker.controllers.static.endpoints", List.of(Map.of("host", "127.0.0.1", "port", controllerPort)));
        properties.put("grpc.server.enabled", false);
        properties.put("kestra.server.service.purge.initial-delay", "1h");
        properties.put("kestra.server.service.purge.fixed-delay", "1h");
        properties.put("kestra.server.service.purge.retention", "7d");
        // Nothing leaves the machine: no plugin download, no usage report, no tutorial flows.
        properties.put("kestra.plugins.auto-install.enabled", false);
        properties.put("kestra.anonymous-usage-report.enabled", false);
        properties.put("kestra.tutorial-flows.enabled", false);
        properties.put("kestra.server.liveness.enabled", false);
        // The queues live in the in-memory database and are polled: slower polling when idle
        // keeps the engine light beside Spark on a small machine.
        properties.put("kestra.jdbc.queues.min-poll-interval", "100ms");
        properties.put("kestra.jdbc.queues.max-poll-interval", "1s");
        properties.put("kestra.jdbc.queues.poll-switch-interval", "5s");
        return properties;
    }

    private int serve(BufferedReader in, PrintStream out) throws Exception {
        ExecutorService runs = Executors.newVirtualThreadPerTaskExecutor();
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            Map<String, Object> request;
            try {
                request = json.readValue(line, new TypeReference<>() {
                });
            } catch (Exception error) {
                answer(out, null, Map.of("error", "bad-request", "message", oneLine(error)));
                continue;
            }
            Object id = request.get("id");
            String op = String.valueOf(request.get("op"));
            switch (op) {
                case "stop" -> {
                    answer(out, id, Map.of("event", "stopping"));
                    runs.shutdownNow();
                    return 0;
                }
                case "validate" -> answer(out, id, guarded(() -> validate((String) request.get("source"))));
                // Executions run side by side; each answer carries its request's id.
                case "run" -> runs.submit(() -> answer(out, id, guarded(() -> run(request))));
                default -> answer(out, id, Map.of("error", "bad-request", "message", "unknown op '" + op + "'"));
            }
        }
        runs.shutdownNow();
        return 0;
    }

    private interface Action {
        Map<String, Object> call() throws Exception;
    }

    private static Map<String, Object> guarded(Action action) {
        try {
            return action.call();
        } catch (Throwable error) {
            error.printStackTrace(System.err);
            return Map.of("error", "engine", "message", oneLine(error));
        }
    }

    private void answer(PrintStream out, Object id, Map<String, Object> answer) {
        Map<String, Object> tagged = new LinkedHashMap<>(answer);
        if (id != null) {
            tagged.put("id", id);
        }
        String text;
        try {
            text = json.writeValueAsString(tagged);
        } catch (Exception error) {
            text = "{\"error\": \"engine\", \"message\": \"unserializable answer\"" + (id == null ? "" : ", \"id\": " + id) + "}";
        }
        synchronized (out) {
            out.println(text);
            out.flush();
        }
    }

    private Map<String, Object> validate(String source) {
        FlowService flowService = context.getBean(FlowService.class);
        List<ValidateConstraintViolation> violations = flowService.validate(TENANT, List.of(new FlowSource(null, source)));
        List<String> errors = new ArrayList<>();
        List<String> warnings = new ArrayList<>();
        String flowId = null;
        String namespace = null;
        for (ValidateConstraintViolation violation : violations) {
            if (violation.getConstraints() != null && !violation.getConstraints().isBlank()) {
                errors.add(violation.getConstraints().strip());
            }
            if (violation.getWarnings() != null) {
                warnings.addAll(violation.getWarnings());
            }
            flowId = Optional.ofNullable(violation.getFlow()).orElse(flowId);
            namespace = Optional.ofNullable(violation.getNamespace()).orElse(namespace);
        }
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("ok", errors.isEmpty());
        answer.put("errors", errors);
        answer.put("warnings", warnings);
        answer.put("flow", flowId);
        answer.put("namespace", namespace);
        return answer;
    }

    @SuppressWarnings("unchecked")
    private Map<String, Object> run(Map<String, Object> request) throws Exception {
        String source = (String) request.get("source");
        Map<String, Object> inputs = Optional.ofNullable((Map<String, Object>) request.get("inputs")).orElse(Map.of());
        Number timeoutSeconds = Optional.ofNullable((Number) request.get("timeoutSeconds")).orElse(3600);

        FlowWithSource flow;
        synchronized (this) {
            Map<String, Object> validation = validate(source);
            if (!Boolean.TRUE.equals(validation.get("ok"))) {
                return Map.of("error", "invalid-flow", "message", String.join("; ", (List<String>) validation.get("errors")));
            }
            flow = context.getBean(FlowService.class).importFlow(TENANT, source);
        }

        Set<String> declared = flow.getInputs() == null ? Set.of()
            : flow.getInputs().stream().map(Input::getId).collect(Collectors.toCollection(java.util.TreeSet::new));
        for (String name : new TreeMap<>(inputs).keySet()) {
            if (!declared.contains(name)) {
                return Map.of("error", "bad-input", "message",
                    "unknown input '" + name + "': the inputs of " + flow.getId() + " are " + String.join(", ", declared));
            }
        }

        FlowInputOutput flowInputOutput = context.getBean(FlowInputOutput.class);
        Execution execution;
        try {
            execution = Execution.newExecution(flow, (f, e) -> flowInputOutput.readExecutionInputs(f, e, inputs), null, Optional.empty());
        } catch (InputOutputValidationException error) {
            return Map.of("error", "bad-input", "message", oneLine(error));
        }

        long started = System.nanoTime();
        Execution finished = awaitEnd(execution, flow, Duration.ofMillis((long) (timeoutSeconds.doubleValue() * 1000)));
        if (finished == null) {
            try {
                context.getBean(TestRunnerUtils.class).killExecution(execution);
            } catch (Throwable ignored) {
                // the execution may have ended in between
            }
            return Map.of("error", "timeout", "message",
                "execution " + execution.getId() + " did not end within " + timeoutSeconds + " s", "executionId", execution.getId());
        }
        double seconds = (System.nanoTime() - started) / 1e9;

        List<Map<String, Object>> taskRuns = new ArrayList<>();
        for (TaskRun taskRun : Optional.ofNullable(finished.getTaskRunList()).orElse(List.of())) {
            Map<String, Object> run = new LinkedHashMap<>();
            run.put("taskId", taskRun.getTaskId());
            run.put("state", taskRun.getState().getCurrent().name());
            run.put("attempts", taskRun.getAttempts() == null ? 0 : taskRun.getAttempts().size());
            taskRuns.add(run);
        }

        Map<String, Object> outputs = context.getBean(ExecutionOutputService.class).getOutputs(finished);

        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("executionId", finished.getId());
        answer.put("state", finished.getState().getCurrent().name());
        answer.put("taskRuns", taskRuns);
        answer.put("outputs", outputs == null ? Map.of() : new TreeMap<>(outputs));
        answer.put("seconds", seconds);
        List<Map<String, Object>> history = new ArrayList<>();
        for (State.History entry : finished.getState().getHistories()) {
            history.add(Map.of("state", entry.getState().name(), "date", entry.getDate().toString()));
        }
        answer.put("stateHistory", history);
        List<LogEntry> entries = logEntries(finished);
        answer.put("logLevels", levelCounts(entries));
        answer.put("logs", logs(entries));
        return answer;
    }

    /**
     * Emits the execution and polls its state every 200 ms until it ends (null after timeout).
     */
    @SuppressWarnings("unchecked")
    private Execution awaitEnd(Execution execution, FlowWithSource flow, Duration timeout) throws Exception {
        DispatchQueueInterface<Execution> executionQueue = context.getBean(Argument.of(DispatchQueueInterface.class, Execution.class));
        ExecutionRepositoryInterface executions = context.getBean(ExecutionRepositoryInterface.class);
        ExecutionService executionService = context.getBean(ExecutionService.class);
        executionQueue.emit(execution);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            Optional<Execution> current = executions.findById(TENANT, execution.getId());
            if (current.isPresent() && executionService.isTerminated(flow, current.get())) {
                return current.get();
            }
            Thread.sleep(200);
        }
        return null;
    }

    /**
     * The execution's logs, INFO and above, once the indexer has stored those of every task run
     * (it works asynchronously).
     */
    private List<LogEntry> logEntries(Execution execution) throws InterruptedException {
        LogDataStoreInterface store = context.getBean(LogDataStoreInterface.class);
        Set<String> taskRunIds = Optional.ofNullable(execution.getTaskRunList()).orElse(List.of()).stream()
            .map(TaskRun::getId).collect(Collectors.toSet());
        List<LogEntry> entries = List.of();
        int previous = -1;
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (System.nanoTime() < deadline) {
            entries = store.findByExecutionId(TENANT, execution.getId(), Level.INFO);
            Set<String> seen = entries.stream().map(LogEntry::getTaskRunId).filter(Objects::nonNull).collect(Collectors.toSet());
            if (seen.containsAll(taskRunIds) && entries.size() == previous) {
                break;
            }
            previous = entries.size();
            Thread.sleep(300);
        }
        return entries;
    }

    /**
     * How many of the entries each level has, counted before {@link #logs} keeps only the last
     * of each task run, so that an early ERROR line is counted too.
     */
    private static Map<String, Integer> levelCounts(List<LogEntry> entries) {
        Map<String, Integer> counts = new TreeMap<>();
        for (LogEntry entry : entries) {
            counts.merge(entry.getLevel() == null ? "NONE" : entry.getLevel().name(), 1, Integer::sum);
        }
        return counts;
    }

    /** The entries as {taskId, attempt, level, message}, the last ones of each task run. */
    private static List<Map<String, Object>> logs(List<LogEntry> entries) {
        Map<String, List<LogEntry>> byTaskRun = new LinkedHashMap<>();
        for (LogEntry entry : entries) {
            byTaskRun.computeIfAbsent(String.valueOf(entry.getTaskRunId()), key -> new ArrayList<>()).add(entry);
        }
        List<Map<String, Object>> logs = new ArrayList<>();
        for (List<LogEntry> group : byTaskRun.values()) {
            for (LogEntry entry : group.subList(Math.max(0, group.size() - MAX_LOGS_PER_TASK_RUN), group.size())) {
                Map<String, Object> log = new LinkedHashMap<>();
                log.put("taskId", entry.getTaskId());
                log.put("attempt", entry.getAttemptNumber());
                log.put("level", entry.getLevel() == null ? null : entry.getLevel().name());
                String message = Optional.ofNullable(entry.getMessage()).orElse("");
                log.put("message", message.length() > MAX_MESSAGE_CHARS ? message.substring(0, MAX_MESSAGE_CHARS) + "..." : message);
                logs.add(log);
            }
        }
        return logs;
    }

    private static Map<String, String> parseArgs(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("usage: Launcher --home DIR --controller-port PORT [--worker-threads N]");
            }
            options.put(args[i].substring(2), args[++i]);
        }
        return options;
    }

    static String oneLine(Throwable error) {
        Throwable root = error;
        while (root.getCause() != null && root.getCause() != root && root.getMessage() == null) {
            root = root.getCause();
        }
        String message = root.getMessage() == null ? root.getClass().getName() : root.getMessage();
        return message.replaceAll("\\s+", " ").strip();
    }
}
