package dataplatform.kestra;

import java.time.Instant;
import java.util.Map;
import java.util.regex.Pattern;

import org.slf4j.event.Level;
import org.slf4j.spi.LoggingEventBuilder;

import io.kestra.core.models.tasks.runners.AbstractLogConsumer;
import io.kestra.core.models.tasks.runners.DefaultLogConsumer;
import io.kestra.core.runners.RunContext;
import io.kestra.core.runners.RunContextLogger;

/**
 * The log consumer of {@link ShellCommands}: stdout, and Kestra's {@code ::{...}::} lines on
 * either stream, go to Kestra's own consumer as they would with any script task (INFO logs,
 * outputs, metrics); a stderr line is logged at the level of what it is, where Kestra's own
 * consumer logs every one at ERROR, so that a successful run shows no error.
 *
 * <p>Levels of stderr lines:
 * <ul>
 * <li>the jobs' own failure line, {@code error: ...}, and the JVM's {@code Error: ...} and
 * {@code Exception in thread ...}: ERROR;</li>
 * <li>a log4j or JVM record, {@code [yy/MM/dd ][HH:mm:ss ]LEVEL ...} (Spark, Kafka's clients,
 * Hadoop), or Python's logging, {@code LEVEL:name:...}: its level, FATAL and CRITICAL as ERROR;</li>
 * <li>a Python warning, {@code file.py:12: SomeWarning: ...}: WARN;</li>
 * <li>a Python traceback, from {@code Traceback (most recent call last):} to its exception's
 * line: ERROR, since an uncaught exception ends the job;</li>
 * <li>a continuation of a record (indented, {@code Caused by:}, a Java exception's name after a
 * record): the level of that record;</li>
 * <li>any other line: WARN, worth a look but no failure by itself (the exit code and the job's
 * error line say whether the task failed).</li>
 * </ul>
 */
public class LeveledLogConsumer extends AbstractLogConsumer {
    private static final Pattern KESTRA_LINE = Pattern.compile("^(::\\{.*}::|##kestra:log:\\w+##)$");
    // Lines that report the command's own failure: the jobs' one line, and the JVM's when
    // spark-submit itself gives up.
    private static final Pattern ERROR_LINE = Pattern.compile("^(?:[Ee]rror: |Exception in thread )");
    private static final Pattern RECORD = Pattern.compile(
        "^(?:\\d{2,4}[/-]\\d{2}[/-]\\d{2}[ T])?(?:\\d{2}:\\d{2}:\\d{2}(?:[.,]\\d+)? )?\\[?"
            + "(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\\]?(?=[\\s:])");
    private static final Pattern PYTHON_WARNING = Pattern.compile("^.+:\\d+: \\w*Warning: ");
    private static final Pattern TRACEBACK = Pattern.compile("^Traceback \\(most recent call last\\):");
    private static final Pattern CHAINED = Pattern.compile(
        "^(?:During handling of the above exception|The above exception was the direct cause)");
    private static final Pattern CONTINUATION = Pattern.compile(
        "^(?:\\s|Caused by: |Suppressed: |\\.\\.\\. \\d+ more|[a-z][\\w$]*(?:\\.[\\w$]+)+(?:Exception|Error|Throwable)\\b)");

    private final RunContext runContext;
    private final DefaultLogConsumer kestra;
    private final Object stderrLock = new Object();
    // The level of the record that a continuation line belongs to; null before the first one.
    private Level current;
    private boolean inTraceback;

    public LeveledLogConsumer(RunContext runContext) {
        this.runContext = runContext;
        this.kestra = new DefaultLogConsumer(runContext);
    }

    @Override
    public void accept(String line, Boolean isStdErr) {
        accept(line, isStdErr, null);
    }

    @Override
    public void accept(String line, Boolean isStdErr, Instant instant) {
        if (!Boolean.TRUE.equals(isStdErr) || line == null || KESTRA_LINE.matcher(line).matches()) {
            kestra.accept(line, isStdErr, instant);
            return;
        }
        Level level;
        synchronized (stderrLock) {
            level = levelOf(line);
        }
        LoggingEventBuilder event = runContext.logger().atLevel(level);
        if (instant != null) {
            event = event.addKeyValue(RunContextLogger.ORIGINAL_TIMESTAMP_KEY, instant);
        }
        event.log(line);
        stdErrCount.incrementAndGet();
    }

    /** The level of one stderr line, given the lines before it. */
    Level levelOf(String line) {
        if (ERROR_LINE.matcher(line).find()) {
            return startRecord(Level.ERROR, false);
        }
        var record = RECORD.matcher(line);
        if (record.find()) {
            return startRecord(switch (record.group(1)) {
                case "TRACE" -> Level.TRACE;
                case "DEBUG" -> Level.DEBUG;
                case "INFO" -> Level.INFO;
                case "WARN", "WARNING" -> Level.WARN;
                default -> Level.ERROR;
            }, false);
        }
        if (PYTHON_WARNING.matcher(line).find()) {
            return startRecord(Level.WARN, false);
        }
        if (TRACEBACK.matcher(line).find() || CHAINED.matcher(line).find()) {
            return startRecord(Level.ERROR, true);
        }
        if (inTraceback) {
            // A traceback ends with its exception's line, the first one not indented.
            inTraceback = line.isBlank() || Character.isWhitespace(line.charAt(0));
            return current;
        }
        if (current != null && (line.isBlank() || CONTINUATION.matcher(line).find())) {
            return current;
        }
        return startRecord(Level.WARN, false);
    }

    private Level startRecord(Level level, boolean traceback) {
        current = level;
        inTraceback = traceback;
        return level;
    }

    @Override
    public Map<String, Object> getOutputs() {
        return kestra.getOutputs();
    }

    @Override
    public int getStdOutCount() {
        return kestra.getStdOutCount();
    }

    @Override
    public int getStdErrCount() {
        return kestra.getStdErrCount() + stdErrCount.get();
    }
}
