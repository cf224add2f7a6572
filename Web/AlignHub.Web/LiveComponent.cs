using Microsoft.AspNetCore.Components;

namespace AlignHub.Web;

/// <summary>
/// A page that re-reads its data every second while the circuit is open, so progress written by a worker in any
/// process shows without a reload.
/// </summary>
public abstract class LiveComponent : ComponentBase, IDisposable
{
    readonly CancellationTokenSource stop = new();
    protected virtual TimeSpan Interval => TimeSpan.FromSeconds(1);

    protected abstract Task LoadAsync(CancellationToken ct);

    protected override async Task OnInitializedAsync() => await LoadAsync(stop.Token);

    protected override void OnAfterRender(bool firstRender)
    {
        if (firstRender) _ = PollAsync();
    }

    async Task PollAsync()
    {
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stop.Token))
            {
                await InvokeAsync(async () =>
                {
                    await LoadAsync(stop.Token);
                    StateHasChanged();
                });
            }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
    }

    public void Dispose()
    {
        stop.Cancel();
        stop.Dispose();
        GC.SuppressFinalize(this);
    }
}
