package dataplatform.kestra;

import java.net.InetAddress;
import java.net.InetSocketAddress;

import io.grpc.ServerBuilder;
import io.grpc.ServerCredentials;
import io.grpc.ServerProvider;
import io.grpc.netty.NettyServerBuilder;

/**
 * gRPC servers on the loopback interface only. Kestra's worker controller asks gRPC for a
 * server on a port, which would listen on every interface; in this single-JVM engine the worker
 * reaches its controller on localhost, so nothing else needs to. Registered through
 * META-INF/services/io.grpc.ServerProvider, ahead of Netty's own provider.
 */
public final class LoopbackServerProvider extends ServerProvider {
    @Override
    protected boolean isAvailable() {
        return true;
    }

    @Override
    protected int priority() {
        return 10;
    }

    @Override
    protected ServerBuilder<?> builderForPort(int port) {
        return NettyServerBuilder.forAddress(loopback(port));
    }

    @Override
    protected NewServerBuilderResult newServerBuilderForPort(int port, ServerCredentials credentials) {
        return NewServerBuilderResult.serverBuilder(NettyServerBuilder.forAddress(loopback(port), credentials));
    }

    private static InetSocketAddress loopback(int port) {
        return new InetSocketAddress(InetAddress.getLoopbackAddress(), port);
    }
}
